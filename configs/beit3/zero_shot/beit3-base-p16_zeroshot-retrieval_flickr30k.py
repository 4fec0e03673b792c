# Zero-shot Flickr30k retrieval (test split) with the released base ITC
# file as it is: the dual encoder at 224, no fine-tuning. Test only.
_base_ = [
    '../retrieval/beit3-base-p16_retrieval_16xb192-20e_flickr30k-384px.py'
]

model = dict(backbone=dict(img_size=224, drop_path_rate=0., with_cp=False))

# the recipe's test pipeline at 224
test_pipeline = [dict(t, scale=(224, 224)) if t.type == 'Resize' else t
                 for t in _base_.beit3_test_pipeline]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
# test only
train_dataloader = train_cfg = optim_wrapper = param_scheduler = None
auto_scale_lr = val_dataloader = val_cfg = val_evaluator = None
