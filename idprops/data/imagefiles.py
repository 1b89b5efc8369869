"""Image files on disk: found in a folder without following links, read with their name.

:func:`find_image_files` lists the images of a folder as :func:`~idprops.data.load_folder`
serves them: one class per subfolder (``root/<class>/.../<image>``), or, when the folder
has no subfolder, its images unlabelled. It never follows a link to a folder (a link to
a parent folder would list the same images again, under the wrong class, without end)
and never opens anything but a regular file (a named pipe called ``x.png`` would block
the reader forever); what it leaves out it names in a warning.

:class:`ImageFiles` reads them on access. Each image's size is checked from its header
before its pixels are decoded, against :data:`MAX_PIXELS` (a small compressed file can
hold a huge image) and against the first image's size (images of different sizes cannot
be measured together); every error names the file.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from .transforms import to_unit

__all__ = ["IMAGE_EXTENSIONS", "MAX_PIXELS", "FolderImages", "ImageFiles", "find_image_files", "image_header"]

#: File name endings read as images (torchvision's ImageFolder reads the same ones).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

#: Default largest image, in pixels, that is decoded: 4096 x 4096. As float32 RGB such an
#: image takes 200 MB; a 12,000 x 12,000 PNG of uniform colour is 148 KB on disk.
MAX_PIXELS = 4096 * 4096

_GRAYSCALE_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_SIXTEEN_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
# Shown in a warning; the rest are counted.
_NAMED_SKIPS = 5


class FolderImages(NamedTuple):
    """The images of a folder: their paths, and labels indexing ``classes`` (None if unlabelled).

    Examples
    --------
    >>> FolderImages(["a/0.png", "b/0.png"], [0, 1], ["a", "b"]).classes
    ['a', 'b']
    """

    paths: list[str]
    targets: list[int] | None
    classes: list[str] | None


def _entries(folder: str) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return sorted(it, key=lambda entry: entry.name)


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _sort_entry(entry: os.DirEntry, dirs: list, files: list, skipped: list) -> None:
    """Put one directory entry in ``dirs`` (real folders), ``files`` (regular image files,
    possibly through a link) or ``skipped`` (with the reason); other files are ignored."""
    if entry.is_dir(follow_symlinks=False):
        dirs.append(entry.path)
    elif entry.is_symlink() and entry.is_dir():
        skipped.append(f"{entry.path} (a link to a folder)")
    elif _is_image_name(entry.name):
        # is_file follows a link to its target and is True for regular files only.
        if entry.is_file():
            files.append(entry.path)
        else:
            skipped.append(f"{entry.path} (not a regular file)")


def _walk(folder: str, skipped: list) -> list[str]:
    """Image files under ``folder``, in ImageFolder's order (folders by path, then names)."""
    by_folder, pending = [], [folder]
    while pending:
        current = pending.pop()
        dirs: list[str] = []
        files: list[str] = []
        for entry in _entries(current):
            _sort_entry(entry, dirs, files, skipped)
        by_folder.append((current, files))
        pending.extend(dirs)
    return [path for _, files in sorted(by_folder) for path in files]


def _warn_skipped(root: str, skipped: list[str], stacklevel: int) -> None:
    # stacklevel 4 names the line that called load_folder.
    if not skipped:
        return
    named = "; ".join(skipped[:_NAMED_SKIPS])
    more = f"; and {len(skipped) - _NAMED_SKIPS} more" if len(skipped) > _NAMED_SKIPS else ""
    warnings.warn(
        f"idprops: {len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} of the image folder "
        f"{root} left out: {named}{more}. Links to folders are not followed (they can list "
        "images twice, under another class) and only regular files are read; copy the "
        "images into the folder to include them.",
        UserWarning,
        stacklevel=stacklevel,
    )


def find_image_files(root: str | os.PathLike) -> FolderImages:
    """The image files of ``root``: one class per subfolder, or unlabelled when it has none.

    With subfolders, each is a class (labels index the sorted folder names, as in
    torchvision's ``ImageFolder``) holding images at any depth; images directly in
    ``root`` are then left out, with a warning. Without subfolders, the images in
    ``root`` are returned unlabelled (``targets`` and ``classes`` None). Links to
    folders are not followed and only regular files are listed (links to regular files
    are); a warning names whatever was left out. Files whose names do not end in one of
    :data:`IMAGE_EXTENSIONS` are ignored.

    Parameters
    ----------
    root : path
        The folder.

    Returns
    -------
    FolderImages
        ``paths``, ``targets`` (one label per path, or None) and ``classes``.

    Examples
    --------
    >>> import os, tempfile
    >>> root = tempfile.mkdtemp()
    >>> for name in ("cat/0.png", "cat/1.png", "dog/0.png"):
    ...     os.makedirs(os.path.join(root, os.path.dirname(name)), exist_ok=True)
    ...     open(os.path.join(root, name), "wb").close()
    >>> found = find_image_files(root)
    >>> found.targets, found.classes
    ([0, 0, 1], ['cat', 'dog'])
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"no image folder at {root}: expected one subfolder of images per class, or the images themselves."
        )
    class_dirs: list[str] = []
    top_files: list[str] = []
    skipped: list[str] = []
    for entry in _entries(root):
        _sort_entry(entry, class_dirs, top_files, skipped)
    if not class_dirs:
        _warn_skipped(root, skipped, stacklevel=4)
        if not top_files:
            raise FileNotFoundError(
                f"no images in {root}: expected one subfolder of images per class, or images "
                f"(files ending in {', '.join(IMAGE_EXTENSIONS)}) directly in it for unlabelled data."
            )
        return FolderImages(top_files, None, None)
    paths, targets, empty = [], [], []
    for label, folder in enumerate(class_dirs):
        files = _walk(folder, skipped)
        if not files:
            empty.append(os.path.basename(folder))
        paths.extend(files)
        targets.extend([label] * len(files))
    if top_files:
        skipped.append(f"{len(top_files)} image(s) directly in the folder, outside the class folders")
    _warn_skipped(root, skipped, stacklevel=4)
    if empty:
        raise FileNotFoundError(
            f"the class folder(s) {empty} of {root} hold no images (files ending in "
            f"{', '.join(IMAGE_EXTENSIONS)}); remove them or add their images."
        )
    return FolderImages(paths, targets, [os.path.basename(folder) for folder in class_dirs])


def _open(path: str, max_pixels: int | None):
    """Open an image lazily (header only), refusing one larger than ``max_pixels``."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            # Pillow's own warning (above 89 M pixels) would precede the error below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise OSError(f"cannot read the image {path}: {exc}") from exc
    width, height = img.size
    if max_pixels is not None and width * height > max_pixels:
        img.close()
        raise ValueError(
            f"the image {path} is {width} x {height} pixels, more than max_pixels={max_pixels:,} "
            "(decoding it would take about "
            f"{width * height * 4 * len(img.getbands()) / 1e6:,.0f} MB); if it is meant, pass a "
            "larger max_pixels to load_folder (None: no limit), or --max-pixels N on the command line."
        )
    return img


def image_header(path: str, max_pixels: int | None = MAX_PIXELS) -> tuple[int, tuple[int, int]]:
    """Channels (1 for grayscale modes, else 3) and (width, height) of an image, from its header.

    Examples
    --------
    >>> import os, tempfile
    >>> from PIL import Image
    >>> path = os.path.join(tempfile.mkdtemp(), "x.png")
    >>> Image.new("L", (5, 3)).save(path)
    >>> image_header(path)
    (1, (5, 3))
    """
    with _open(path, max_pixels) as img:
        return (1 if img.mode in _GRAYSCALE_MODES else 3), img.size


class ImageFiles:
    """Image files read on access as float32 C x H x W tensors in [0, 1].

    Parameters
    ----------
    paths : sequence of str
        The files.
    channels : {1, 3}
        Grayscale or RGB; 8-bit pixels are divided by 255, 16-bit ones by 65535, float
        images kept as they are.
    size : (int, int) or None
        Resize every image to (height, width), bilinear and antialiased; None keeps the
        files' sizes, which must then all be ``expected``.
    max_pixels : int or None, default=MAX_PIXELS
        Largest image decoded; a larger one is refused from its header. None: no limit.
    expected : (int, int), default=None
        (width, height) every file must have when ``size`` is None (None: not checked).

    Examples
    --------
    >>> import os, tempfile
    >>> from PIL import Image
    >>> path = os.path.join(tempfile.mkdtemp(), "x.png")
    >>> Image.new("L", (5, 3), color=255).save(path)
    >>> ImageFiles([path], channels=1, size=None)[0].shape
    torch.Size([1, 3, 5])
    """

    def __init__(
        self,
        paths: Sequence[str],
        channels: int,
        size: tuple[int, int] | None,
        max_pixels: int | None = MAX_PIXELS,
        expected: tuple[int, int] | None = None,
    ) -> None:
        self.paths = list(paths)
        self.channels = channels
        self.size = size
        self.max_pixels = max_pixels
        self.expected = expected

    def __len__(self) -> int:
        return len(self.paths)

    def _check_size(self, path: str, size: tuple[int, int]) -> None:
        if self.size is None and self.expected is not None and size != self.expected:
            raise ValueError(
                f"images of different sizes: {path} is {size[0]} x {size[1]} pixels, the first "
                f"image {self.expected[0]} x {self.expected[1]}; images are measured together "
                "only at one size: pass image_size=N to load_folder (--image-size N on the "
                "command line) to resize them all to N x N."
            )

    def __getitem__(self, i: int) -> torch.Tensor:
        path = self.paths[i]
        with _open(path, self.max_pixels) as img:
            self._check_size(path, img.size)
            try:
                image = self._decode(img)
            except (OSError, ValueError, SyntaxError) as exc:  # e.g. a truncated file
                raise OSError(f"cannot read the image {path}: {exc}") from exc
        if image.shape[0] != self.channels:
            image = image.mean(0, keepdim=True) if self.channels == 1 else image.expand(3, -1, -1)
        if self.size is not None:
            from torchvision.transforms.functional import resize

            image = resize(image, list(self.size), antialias=True)
        return image.contiguous()

    def _decode(self, img) -> torch.Tensor:
        if img.mode in _SIXTEEN_BIT_MODES:  # 16-bit scans (common in medical imaging)
            return torch.from_numpy(np.asarray(img, dtype=np.float32) / 65535.0)[None]
        if img.mode == "F":
            return torch.from_numpy(np.asarray(img, dtype=np.float32).copy())[None]
        pixels = np.asarray(img.convert("L" if self.channels == 1 else "RGB"))
        image = to_unit(torch.from_numpy(pixels.copy()))
        return image[None] if image.ndim == 2 else image.permute(2, 0, 1)
