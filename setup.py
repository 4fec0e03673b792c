from setuptools import find_packages, setup

version_ns: dict = {}
with open('beit3_mm/version.py') as f:
    exec(f.read(), version_ns)

setup(
    name='beit3_mm',
    version=version_ns['__version__'],
    description='BEiT-3 for OpenMMLab: classification, detection, '
    'segmentation, vision-language tasks and pretraining',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('configs', 'tools', 'tests', 'projects')),
    python_requires='>=3.10',
    install_requires=[
        'torch==2.14.1',
        'torchvision==0.29.1',
        'mmengine==0.10.7',
        'mmcv==2.1.0',
        'mmdet==3.3.0',
        'mmsegmentation==1.2.2',
        'mmpretrain==1.2.0',
        'numpy<2',
        'opencv-python<4.12',
        'transformers>=4.28,<4.52',
        'sentencepiece',
        'pycocotools',
        'scipy',
        'ftfy',
        'regex',
    ],
    extras_require={
        # torchscale (a test-only reference) is installed by tools/install.sh
        # without its outdated pins.
        'tests': ['pytest', 'timm>=1.0.31'],
    },
    license='MIT',
    zip_safe=False,
)
