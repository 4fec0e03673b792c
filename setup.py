from setuptools import find_packages, setup


def parse_requirements(path: str) -> list:
    """The requirement lines of ``path``, without comments."""
    with open(path) as f:
        lines = (line.split('#')[0].strip() for line in f)
        return [line for line in lines if line]


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
    install_requires=parse_requirements('requirements/runtime.txt'),
    extras_require={
        # torchscale (a test-only reference) is installed by tools/install.sh
        # without its outdated pins.
        'tests': parse_requirements('requirements/tests.txt'),
        'deepspeed': parse_requirements('requirements/optional.txt'),
    },
    license='MIT',
    zip_safe=False,
)
