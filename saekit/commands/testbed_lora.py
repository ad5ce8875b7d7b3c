"""`saekit testbed lora`: train one factor LoRA on the testbed's FluxPipeline (the SAE-vs-LoRA baseline).

    saekit testbed lora --model runs/fluxbed/pipeline --factor colour --value red --out runs/fluxbed/lora_red

The flags are `saekit.testbed.fluxbed.lora.FactorLoraConfig`; `train_factor_lora` does the work. The folder
loads with diffusers' `pipe.load_lora_weights(folder)`; `saekit sweep --model ... --loras <folders>`
measures it beside the SAE arms.
"""

from __future__ import annotations


def main(argv: list[str]) -> int:
    import tyro

    from saekit.testbed.fluxbed.lora import FactorLoraConfig, train_factor_lora

    cfg = tyro.cli(FactorLoraConfig, args=argv, prog="saekit testbed lora")
    res = train_factor_lora(cfg)
    i = res.info
    print(
        f"LoRA {i['factor']}={i['value']}: {i['trainable_params']:,} trainable parameters "
        f"({i['file_bytes']:,} bytes), trained in {i['train_s']:.0f} s on {i['threads']} thread(s); "
        f"loss {i['loss_first_50']:.4f} -> {i['loss_last_50']:.4f}; wrote {res.folder}"
    )
    return 0
