"""insnet: predict inelastic neutron scattering spectra from crystal structures."""
from setuptools import find_packages, setup

setup(
    name="insnet",
    version="0.1.0",
    description=("Open INS physics engine and ML prediction of inelastic neutron "
                 "scattering spectra from crystal structures, for Mantid"),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="GPL-3.0-or-later",
    python_requires=">=3.10",
    packages=find_packages(include=["insnet_core", "insnet_core.*"]),
    package_data={"insnet_core": ["instruments/data/*.json", "examples/*", "server/static/*"]},
    install_requires=[
        "numpy>=1.24,<3",
        "scipy>=1.10,<2",
        "h5py>=3.8,<4",
        "matplotlib>=3.7,<4",
        "phonopy>=2.20,<5",
        "spglib>=2.0,<3",
        "pymatgen>=2024.1.1",
        "periodictable>=1.7,<3",
        "resins==0.1.0",
        "tqdm>=4.60,<5",
        "dask[distributed]>=2023.1",
    ],
    extras_require={
        "coherent": ["euphonic>=1.3,<3"],
        # the e3nn predictor (training, loading, prediction); torch is capped so that
        # the CPU wheel the package index offers is the one chosen
        # (onnx: to export the autoencoders; running them needs onnxruntime only)
        "ml": ["torch>=2.1,<2.14", "e3nn>=0.5,<0.7", "vesin>=0.3", "safetensors>=0.4",
               "onnxruntime>=1.16", "onnx>=1.15"],
        # the uMLIP route (insnet phonons, simulate --potential): weights ship in the wheels
        "umlip": ["chgnet>=0.4,<0.5", "sevenn>=0.11,<0.14", "ase>=3.23"],
        # `insnet serve`: the prediction web page and its HTTP API
        "server": ["fastapi>=0.110", "uvicorn>=0.27", "python-multipart>=0.0.9",
                   "plotly>=5"],
        "test": ["pytest>=7", "euphonic>=1.3,<3", "torch>=2.1,<2.14", "e3nn>=0.5,<0.7",
                 "vesin>=0.3", "safetensors>=0.4", "onnxruntime>=1.16", "onnx>=1.15",
                 "fastapi>=0.110", "uvicorn>=0.27", "python-multipart>=0.0.9", "plotly>=5",
                 "httpx>=0.25", "playwright>=1.40",
                 "chgnet>=0.4,<0.5", "sevenn>=0.11,<0.14", "ase>=3.23"],
        "gpu": ["onnxruntime-gpu>=1.16"],
    },
    entry_points={"console_scripts": ["insnet=insnet_core.cli:main"]},
    classifiers=[
        "License :: OSI Approved :: GNU General Public License v3 or later (GPLv3+)",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Physics",
    ],
)
