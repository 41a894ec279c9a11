"""HOI video generation on a pretrained Wan 2.1 transformer (diffusers), fine-tuned with LoRA.

- `config`: `WanHOIConfig`, the base configs (``wan-vace-1.3b``, tiny CPU configs)
- `conditions`: the one builder of the model's inputs from a `hoi_cli.train.dataset` batch
- `model`: `HOIWan`, the base transformer with the four systems' conditioning (no-op at init)
- `train`: LoRA (peft), flow matching with Wan's shifted logit-normal timesteps, checkpoints, the loop
- `sample`: windows of 4k + 1 frames, Wan's flow schedulers with shift, CFG over the reference

Needs the ``wan`` extra (diffusers, peft, accelerate); nothing here is imported by ``hoi_cli``
unless the Wan backend is asked for.
"""
