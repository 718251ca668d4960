# MIMIC-IT (Otter's in-context instruction data; mllm/dataset/multi_image_dataset/mimicit.py). The layout under
# {mimicit} is the one Otter's mimic-it/README.md gives: <SET>/<SET>_instructions.json and <SET>/<SET>_train.json
# (from Otter's OneDrive), images <SET>.json written by Otter's convert-it (output/<SET>.json; or Otter's
# <SET>.parquet, read when pyarrow is installed). Image ids are '<SET>_IMG_...', instruction ids '<SET>_INS_...'.
# DC / TVC / E4D / SN instructions are videos (one media of frames; max_frames subsamples evenly), the others
# one media per image. num_in_context: in-context examples per query, drawn per (seed, epoch, index);
# None = all candidates (Otter's behaviour). `name` labels the subset in logs (the builder would otherwise call
# every subset 'MIMICITDataset').
MIMICIT_TRAIN = dict(
    # LLaVA-Interleaved (LA): COCO images, one per instruction; in-context examples each bring their own image.
    ladd=dict(type='MIMICITDataset', name='mimicit_ladd', instructions_file='{mimicit}/LA/LADD_instructions.json',
              images_file='{mimicit}/LA.json', num_in_context=2),
    lacr_t2t=dict(type='MIMICITDataset', name='mimicit_lacr_t2t',
                  instructions_file='{mimicit}/LA/LACR_T2T_instructions.json', images_file='{mimicit}/LA.json',
                  num_in_context=2),
    # Spot the difference (SD, subtle-difference version): two images per instruction, two media.
    sd=dict(type='MIMICITDataset', name='mimicit_sd', instructions_file='{mimicit}/SD/SD_instructions.json',
            train_config_file='{mimicit}/SD/SD_train.json', images_file='{mimicit}/SD.json', num_in_context=1),
    # Dense captions (DC, ActivityNet clips): the examples ask about the query's own video, shown once.
    dc=dict(type='MIMICITDataset', name='mimicit_dc', instructions_file='{mimicit}/DC/DC_instructions.json',
            train_config_file='{mimicit}/DC/DC_train.json', images_file='{mimicit}/DC.json', num_in_context=3,
            max_frames=16),
)
