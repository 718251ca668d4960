# CPU reproduction of the LCL claim, the OpenFlamingo row: a tiny OpenFlamingo trained on the same 2-way-random
# episodes of SEEN concepts as lcl_synth_2way_random.py, in its own in-context format (one <image> media token per
# example, cross-attention to that image's perceiver latents, examples chunked by <|endofchunk|>), evaluated on the
# same episodes of UNSEEN concepts.
_base_ = ['../_base_/experiment/lcl_cpu.py', '../_base_/model/openflamingo_tiny.py']
data_args = dict(train={{_base_.ISEKAI_SYNTH.episodes_2way_random}})
model_args = dict(
    # sizes matched to the LCL row: the same 64 px / 16 px-patch tower and a 128-wide LM; 16 latents per image
    tiny=dict(vision=dict(image_size=64, patch_size=16, hidden_size=128, intermediate_size=256, num_hidden_layers=2),
              text=dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, max_position_embeddings=1280),
              cross_attn_every_n_layers=2, cross_attn_heads=4, cross_attn_dim_head=32, perceiver_num_latents=16,
              perceiver_heads=4, perceiver_dim_head=32),
    # the tiny LM is random, not a pretrained one kept frozen as in OpenFlamingo's recipe: it must learn too
    full_finetune=True,
    conv_args=dict(max_length=1280, in_context_loss=True),
)
training_args = dict(max_steps=2700)  # ~0.42 s a step with evaluations: ~19 min, the LCL row's budget, not its steps
