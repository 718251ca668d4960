# The LCL tiny model (Shikra's image layout, lcl_tiny.py) at the sizes of the CPU reproduction of the LCL claim
# (config/lcl_cpu/): the vanilla and the LCL rows share it, so they differ only in their training data.
_base_ = ['lcl_tiny.py']
model_args = dict(
    # 2x2 grid of 32 px patches on the 64 px images: 4 image tokens (+ <im_start>, <im_end>) per image
    tiny=dict(image_size=64, patch_size=32, vision_position_std=1.0,
              vision=dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4),
              text=dict(hidden_size=128, intermediate_size=384, num_hidden_layers=3, num_attention_heads=4,
                        num_key_value_heads=4, max_position_embeddings=1280)),
    freeze_vision_tower=True,  # a frozen random tower keeps colour and layout (docs/demo.md)
    # no system prompt: fewer tokens per step; an 8-shot 2-way episode is ~380 tokens (short phrases, 3-letter names)
    conv_args=dict(conv_overrides=dict(system=''), max_length=1280, in_context_loss=True),
)
