"""Datasets, transforms and the DataLoader.

Every dataset holds `.images` (uint8, (N, C, H, W)), `.labels` (int64, (N,)) and `.classes`.
"""
from cnnframe.data.augment import (AlternatingFlip, ColorJitter, CutMix, Cutout, Mixup,
                                   RandomErasing, RandomTranslate)
from cnnframe.data.base import ArrayDataset, DatasetError, default_cache_dir, default_data_root
from cnnframe.data.cifar import CIFAR10, fetch_cifar10
from cnnframe.data.download import ChecksumError, DownloadError
from cnnframe.data.image_folder import ImageFolder, load_image
from cnnframe.data.loader import DataLoader
from cnnframe.data.mnist import MNIST, FashionMNIST
from cnnframe.data.registry import available_datasets, get_dataset
from cnnframe.data.resize import RandomResizedCrop, Resize
from cnnframe.data.shapes import Shapes
from cnnframe.data.transforms import (CIFAR10_MEAN, CIFAR10_STD, Compose, Normalize, RandomCrop,
                                      RandomHorizontalFlip, ToFloat, build_transform,
                                      build_transforms)

__all__ = ["ArrayDataset", "DatasetError", "DownloadError", "ChecksumError", "CIFAR10",
           "fetch_cifar10", "ImageFolder", "load_image", "MNIST", "FashionMNIST", "Shapes",
           "DataLoader",
           "get_dataset", "available_datasets", "Compose", "ToFloat", "Normalize", "RandomCrop",
           "RandomHorizontalFlip", "build_transform", "build_transforms", "CIFAR10_MEAN",
           "CIFAR10_STD", "default_cache_dir", "default_data_root", "RandomErasing", "Cutout",
           "ColorJitter", "RandomTranslate", "AlternatingFlip", "Mixup", "CutMix",
           "RandomResizedCrop", "Resize"]
