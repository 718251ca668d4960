# Otter-9B (OpenFlamingo-9B architecture, MIMIC-IT instruction-tuned), converted once from Otter's HF directory:
#   python tools/convert/otter.py --input /ckpt/OTTER-Image-MPT7B --output DIR
_base_ = ['openflamingo_9b.py']
model_args = dict(type='otter', model_name_or_path='/path/to/otter-9b-mllm')
