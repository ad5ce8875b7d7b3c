"""Continue flow matching of a built fluxbed pipeline for more steps; score it like the build."""
import time, torch, numpy as np, dataclasses, json, sys
torch.set_num_threads(1)
from pathlib import Path
from saekit.testbed.fluxbed.build import load_pipeline, train_renders, fit_judges, score_generations, save_pipeline, peak_rss_mib
from saekit.testbed.fluxbed.config import FluxbedConfig
from saekit.testbed.fluxbed.train import encode_latents, train_flow
from saekit.testbed.fluxbed.report import image_grid_png
steps=int(sys.argv[1])
cfg=dataclasses.replace(FluxbedConfig(), flow_steps=steps, flow_lr=1e-3, seed=0)
t=time.time()
pipe=load_pipeline('runs/fluxbed/pipeline')
data=train_renders(cfg)
z=encode_latents(pipe.vae, data.images)
lat=(z-pipe.vae.config.shift_factor)*pipe.vae.config.scaling_factor
gen=torch.Generator().manual_seed(123)
losses=train_flow(pipe.transformer, pipe.text_encoder, pipe.text_encoder_2, (pipe.tokenizer, pipe.tokenizer_2), lat, data.captions, pipe.scheduler, cfg, gen)
train_s=time.time()-t
out=Path('runs/fluxbed_cont'); out.mkdir(parents=True, exist_ok=True)
save_pipeline(dict(scheduler=pipe.scheduler, vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, text_encoder_2=pipe.text_encoder_2, tokenizer_2=pipe.tokenizer_2, transformer=pipe.transformer), out)
J=fit_judges(cfg)
p2=load_pipeline(out/'pipeline')
a,im,_=score_generations(p2,J,cfg,heldout=False)
b,imh,_=score_generations(p2,J,cfg,heldout=True)
res=dict(extra_flow_steps=steps, lr=1e-3, extra_train_s=round(train_s,1), final_loss=float(np.mean(losses[-100:])), training_combinations=a, heldout_combinations=b, peak_rss_mib=peak_rss_mib())
json.dump(res, open(out/'continued.json','w'), indent=2)
open(out/'samples_train.png','wb').write(image_grid_png(im[:32]))
print(json.dumps(res, indent=1))
