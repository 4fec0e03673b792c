# Flickr30k retrieval (Karpathy split of dataset_flickr30k.json, the 1k test
# images for test) with the loaders and pre-processing of
# coco_retrieval_384px.py: mmpretrain's Flickr30kRetrieval as its
# flickr30k_retrieval.py base reads it.
_base_ = ['./coco_retrieval_384px.py']

train_dataloader = dict(
    dataset=dict(
        type='Flickr30kRetrieval',
        data_root='data/flickr30k',
        ann_file='annotations/dataset_flickr30k.json',
        data_prefix='images',
        split='train'))
val_dataloader = dict(dataset=dict(train_dataloader['dataset'], split='val'))
test_dataloader = dict(
    dataset=dict(train_dataloader['dataset'], split='test'))
