"""The testbed: a small diffusers FluxPipeline trained on digit renders with known factors
(`saekit.testbed.fluxbed`, built by `saekit testbed build`), so diffusion steering can be measured
against ground truth with the ordinary `saekit harvest/train/analyze/steer/sweep` commands."""
