# BEiT-3 pretraining data (paper, section 2.3): every batch holds images,
# texts and image-text pairs in equal parts (MixedSourceSampler,
# source_ratio [1, 1, 1]; the data contract is in beit3_mm.datasets.pretrain).
# 96 per GPU = 32 images + 32 texts + 32 pairs; 64 GPUs give the paper's 6144.
# - images: ImageNet-21k (data/imagenet21k, mmpretrain's layout);
# - texts: plain-text corpora, one document per line, packed into chunks of
#   64 tokens with the released sentencepiece model (data/beit3.spm);
# - pairs: webdataset-style tar shards (data/pretrain/pairs/*.tar), written by
#   tools/dataset_converters/pairs_to_shards.py from COCO / LAVIS json.
# Unreadable samples: GuardedDataset stops the run (on_error='raise') or
# skips them with a warning and a count in the log ('skip', for web data).
# The student's view and the tokenizer's are the same crop (mean = std =
# 127.5 in the model's data preprocessor gives both).
text_tokenizer = dict(type='BEiT3Tokenizer', name_or_path='data/beit3.spm')
image_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.08, 1.0),
        interpolation='bicubic',
        backend='pillow'),
    dict(type='PackPretrainInputs', source='image'),
]
text_pipeline = [dict(type='PackPretrainInputs')]
# no flip: captions say "left" and "right"; the shards' images come decoded
pair_pipeline = [
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.5, 1.0),
        interpolation='bicubic',
        backend='pillow'),
    dict(type='PackPretrainInputs'),
]

train_dataloader = dict(
    batch_size=96,
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    # must equal batch_size (MixedSourceResumeHook checks)
    sampler=dict(
        type='MixedSourceSampler', batch_size=96, source_ratio=[1, 1, 1]),
    dataset=dict(
        type='ConcatDataset',
        ignore_keys=['classes'],  # the image dataset's metainfo
        datasets=[
            dict(
                type='GuardedDataset',
                on_error='raise',
                dataset=dict(
                    type='ImageNet21k',
                    data_root='data/imagenet21k',
                    split='train',
                    pipeline=image_pipeline)),
            dict(
                type='PretrainTextCorpus',
                data_root='data/pretrain/text',
                data_files=[
                    'wikipedia.txt', 'bookcorpus.txt', 'openwebtext.txt',
                    'cc_news.txt', 'stories.txt'
                ],
                tokenizer=text_tokenizer,
                max_text_len=64,
                pipeline=text_pipeline),
            dict(
                type='GuardedDataset',
                on_error='skip',
                dataset=dict(
                    type='ImageTextShards',
                    data_root='data/pretrain/pairs',
                    shards='*.tar',
                    pipeline=pair_pipeline)),
        ]))
