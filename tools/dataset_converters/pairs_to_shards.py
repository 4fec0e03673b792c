"""Image-text pairs (COCO captions or LAVIS-style json) to tar shards for
``ImageTextShards``.

    python tools/dataset_converters/pairs_to_shards.py \\
        data/coco/annotations/coco_karpathy_train.json \\
        --img-root data/coco --out data/pairs/coco --pairs-per-shard 10000

writes ``<out>/pairs-000000.tar`` ... (webdataset layout: ``<key>.jpg`` and
its captions ``<key>.<j>.txt``) with their byte-offset indexes
``<out>/pairs-000000.tar.idx.npy``; several json files go into one run of
shards. An image's captions must follow each other in the json (as they do
in COCO and LAVIS files) to be stored with it once.
"""
import argparse
import itertools
import os.path as osp

from beit3_mm.datasets.pretrain import load_pairs, write_shards


def main() -> None:
    parser = argparse.ArgumentParser(
        description='image-text json to tar shards with byte-offset indexes')
    parser.add_argument('ann_files', nargs='+',
                        help='COCO captions or LAVIS-style json files')
    parser.add_argument('--img-root', default='',
                        help='folder the image paths of the json are under')
    parser.add_argument('--out', required=True, help='folder of the shards')
    parser.add_argument('--pairs-per-shard', type=int, default=10000)
    parser.add_argument('--prefix', default='pairs',
                        help='shard names: <prefix>-000000.tar')
    args = parser.parse_args()
    pairs = itertools.chain.from_iterable(
        ((osp.join(args.img_root, img), cap) for img, cap in load_pairs(f))
        for f in args.ann_files)
    shards = write_shards(pairs, args.out, args.pairs_per_shard, args.prefix)
    print(f'wrote {len(shards)} shards to {args.out}')


if __name__ == '__main__':
    main()
