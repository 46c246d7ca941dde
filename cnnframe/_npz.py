"""A safe reader for ``.npz`` archives: every header is checked before any array is read.

``np.load`` on an npz file trusts what it finds: it allocates whatever shape a member's
``.npy`` header declares, inflates a compressed member as far as its stream goes, and
reports damage as whatever exception the zip, zlib or numpy layer happens to raise.  A
model file or a checkpoint from elsewhere needs more care, so cnnframe reads them here:

1. :class:`NpzReader` opens the zip directory and reads the ``.npy`` header of every member
   (a few hundred bytes each): its name, shape, dtype and data size.  Nothing else is
   decompressed.  Members that are encrypted, use a compression other than stored or
   deflate, are not ``.npy`` arrays, hold Python objects (pickles), occur twice, or
   whose header disagrees with the zip directory's size are refused here.
2. The caller decides from these headers which members it expects and how large each
   may be (:attr:`NpzReader.members`), and refuses the rest before reading any data.
3. :meth:`NpzReader.read` allocates exactly the declared array, fills it from the member's
   stream, and checks that the stream ends exactly there (a stream that inflates
   beyond its declared size is refused), and that the CRC matches.

Every problem is an :class:`NpzError` (a ValueError) whose message says what is wrong
but not which file: the callers add the path and their own wording.
"""
import math
import os
import struct
import zipfile
import zlib

import numpy as np
from numpy.lib import format as npy_format

NPY_SUFFIX = ".npy"
MAX_HEADER_BYTES = 10000   # numpy's own limit for an .npy header
_CHUNK = 1 << 20           # bytes read from the archive at a time
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., name length, extra length
_LOCAL_SIGNATURE = b"PK\x03\x04"


class NpzError(ValueError):
    """An npz archive that is damaged, foreign or refused (the message does not name the file)."""


class NotAnArchiveError(NpzError):
    """The file is not a zip archive at all (say, a pickle, an .npy array or text)."""


class Member:
    """One array of an npz archive, as its headers describe it (no data read).

    Attributes
    ----------
    name : str
        The archive key (the zip member name without ``.npy``).
    shape : tuple of int
    dtype : numpy.dtype
    nbytes : int
        The size of the array data the ``.npy`` header declares.
    compressed : bool
        Whether the member is deflated (np.savez_compressed) rather than stored (np.savez).
    """

    __slots__ = ("name", "shape", "dtype", "fortran_order", "nbytes", "compressed",
                 "_info", "_data_start", "_header_len")

    def describe(self):
        """e.g. "a (3, 4) float32 array (48 bytes)"."""
        return f"a {self.shape} {self.dtype} array ({self.nbytes:,} bytes)"


def _open_error(path):
    """NotAnArchiveError saying what the file looks like, or None if it starts like a zip."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"PK"):
        return None
    if not head:
        return NotAnArchiveError("the file is empty")
    if head.startswith(npy_format.MAGIC_PREFIX):
        return NotAnArchiveError("it holds a single .npy array, not an npz archive")
    if head[:1] == b"\x80":
        return NotAnArchiveError("it is a Python pickle, not an npz archive (pickles are "
                                 "never loaded)")
    return NotAnArchiveError("it is not an npz (zip) archive")


class _MemberStream:
    """The uncompressed bytes of one zip member, read from the archive file.

    Never yields more than the zip directory declares; :meth:`finish` then checks that the
    compressed stream ends exactly there and that the CRC matches.
    """

    def __init__(self, file, member):
        info = member._info
        self._file = file
        self._name = member.name
        self._offset = member._data_start
        self._compressed_left = info.compress_size
        self._left = info.file_size
        self._expected_crc = info.CRC
        self._crc = 0
        self._inflate = zlib.decompressobj(-15) if member.compressed else None

    def _raw(self, n):
        """Up to `n` compressed bytes; raises when the member's data ends early."""
        n = min(n, self._compressed_left)
        self._file.seek(self._offset)
        data = self._file.read(n)
        if len(data) < n:
            raise NpzError(f"member {self._name!r} is truncated (the file ends inside it)")
        self._offset += n
        self._compressed_left -= n
        return data

    def readinto(self, view):
        """Fill the writable byte memoryview `view` completely, or raise NpzError."""
        if len(view) > self._left:
            raise NpzError(f"member {self._name!r} is shorter than its .npy header says")
        filled = 0
        while filled < len(view):
            need = min(len(view) - filled, _CHUNK)
            got = self._stored(view[filled:filled + need]) if self._inflate is None else \
                self._inflated(view[filled:filled + need])
            self._crc = zlib.crc32(view[filled:filled + got], self._crc)
            filled += got
        self._left -= filled

    def _stored(self, view):
        """Read stored bytes straight into `view` (no copy); return how many."""
        n = min(len(view), self._compressed_left)
        self._file.seek(self._offset)
        got = self._file.readinto(view[:n]) if n else 0
        if not got or got < n:
            raise NpzError(f"member {self._name!r} is truncated (the file ends inside it)")
        self._offset += got
        self._compressed_left -= got
        return got

    def _inflated(self, view):
        """Inflate at most len(view) bytes into `view`; return how many."""
        source = self._inflate.unconsumed_tail or self._raw(_CHUNK)
        if not source:
            raise NpzError(f"member {self._name!r}: the compressed data ends before the "
                           "declared size")
        try:
            block = self._inflate.decompress(source, len(view))
        except zlib.error as exc:
            raise NpzError(f"member {self._name!r}: corrupt compressed data "
                           f"(zlib: {exc})") from None
        if not block and self._inflate.eof:
            raise NpzError(f"member {self._name!r}: the compressed data ends before the "
                           "declared size")
        view[:len(block)] = block
        return len(block)

    def read(self, n):
        """`n` bytes (used by numpy's .npy header parser)."""
        buf = bytearray(n)
        self.readinto(memoryview(buf))
        return bytes(buf)

    def finish(self):
        """Check that the member ends here: nothing more to inflate, and a matching CRC."""
        if self._left:
            raise NpzError(f"member {self._name!r} holds {self._left:,} bytes more than its "
                           ".npy header declares")
        if self._inflate is not None:
            while not self._inflate.eof:
                source = self._inflate.unconsumed_tail or self._raw(_CHUNK)
                if not source:
                    raise NpzError(f"member {self._name!r}: the compressed data is cut short")
                try:
                    extra = self._inflate.decompress(source, 1)
                except zlib.error as exc:
                    raise NpzError(f"member {self._name!r}: corrupt compressed data "
                                   f"(zlib: {exc})") from None
                if extra:
                    raise NpzError(f"member {self._name!r}: the compressed data inflates "
                                   "beyond the member's declared size")
            if self._inflate.unused_data or self._compressed_left:
                raise NpzError(f"member {self._name!r}: data follows the end of its "
                               "compressed stream")
        if self._crc != self._expected_crc:
            raise NpzError(f"member {self._name!r} is corrupted (CRC mismatch)")


class NpzReader:
    """An npz archive opened for safe reading; use as a context manager.

    Parameters
    ----------
    path : str or os.PathLike

    Attributes
    ----------
    members : dict of str to Member
        Every array of the archive, from its headers; no array data has been read.

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    NotAnArchiveError
        If the file is not a zip archive (an .npy array, a pickle, text, empty).
    NpzError
        For a damaged archive or a member that is refused (see the module docstring).
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        not_a_zip = _open_error(self.path)  # FileNotFoundError, IsADirectoryError pass through
        if not_a_zip is not None:
            raise not_a_zip
        self._file = open(self.path, "rb")
        try:
            self._size = os.fstat(self._file.fileno()).st_size
            try:
                with zipfile.ZipFile(self._file) as archive:
                    infos = archive.infolist()
            except Exception as exc:  # BadZipFile, struct/Unicode errors, ...: a damaged directory
                raise NpzError(f"damaged zip archive ({type(exc).__name__}: {exc})") from None
            self.members = {}
            for info in infos:
                try:
                    member = self._member(info)
                except NpzError:
                    raise
                except Exception as exc:  # e.g. an offset outside the file
                    raise NpzError(f"damaged zip entry {info.filename!r} "
                                   f"({type(exc).__name__}: {exc})") from None
                if member.name in self.members:
                    raise NpzError(f"member {info.filename!r} occurs twice")
                self.members[member.name] = member
        except BaseException:
            self._file.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._file.close()

    def _member(self, info):
        """The Member of one zip entry: checks its flags, position and .npy header."""
        if not info.filename.endswith(NPY_SUFFIX):
            raise NpzError(f"member {info.filename!r} is not an .npy array")
        name = info.filename[:-len(NPY_SUFFIX)]
        if info.flag_bits & 0x1:
            raise NpzError(f"member {name!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise NpzError(f"member {name!r} uses zip compression method "
                           f"{info.compress_type} (only stored and deflate are read)")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise NpzError(f"member {name!r}: stored with {info.compress_size:,} bytes but "
                           f"declares {info.file_size:,}")
        member = Member()
        member.name = name
        member.compressed = info.compress_type == zipfile.ZIP_DEFLATED
        member._info = info
        # The data starts after the member's local header, whose name and extra field
        # lengths may differ from the central directory's.
        self._file.seek(info.header_offset)
        local = self._file.read(_LOCAL_HEADER.size)
        if len(local) < _LOCAL_HEADER.size:
            raise NpzError(f"member {name!r} is truncated (the file ends inside it)")
        signature, name_len, extra_len = _LOCAL_HEADER.unpack(local)
        if signature != _LOCAL_SIGNATURE:
            raise NpzError(f"member {name!r}: damaged zip entry (bad local header)")
        member._data_start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        if member._data_start + info.compress_size > self._size:
            raise NpzError(f"member {name!r} is truncated (its {info.compress_size:,} bytes "
                           "run past the end of the file)")
        stream = _MemberStream(self._file, member)
        try:
            version = npy_format.read_magic(stream)
            if version == (1, 0):
                header = npy_format.read_array_header_1_0(stream, MAX_HEADER_BYTES)
            elif version == (2, 0):
                header = npy_format.read_array_header_2_0(stream, MAX_HEADER_BYTES)
            else:
                raise NpzError(f"member {name!r}: .npy format version {version} is not read")
        except NpzError:
            raise
        except Exception as exc:  # numpy's parser: ValueError, SyntaxError, ...
            raise NpzError(f"member {name!r}: bad .npy header ({exc})") from None
        member.shape, member.fortran_order, member.dtype = header
        if member.dtype.hasobject:
            raise NpzError(f"member {name!r} holds Python objects (pickled data, which is "
                           "never loaded)")
        if any(d < 0 for d in member.shape):
            raise NpzError(f"member {name!r}: negative dimension in shape {member.shape}")
        member.nbytes = math.prod(member.shape) * member.dtype.itemsize
        member._header_len = info.file_size - stream._left
        if info.file_size - member._header_len != member.nbytes:
            raise NpzError(f"member {name!r}: its .npy header declares {member.describe()} "
                           f"but the zip entry holds {info.file_size - member._header_len:,} "
                           "bytes of data")
        return member

    def read(self, name, max_bytes=None):
        """The array of member `name`, checked against its headers while it is read.

        Parameters
        ----------
        name : str
            A key of :attr:`members`.
        max_bytes : int, optional
            Refuse (before allocating) an array larger than this.

        Returns
        -------
        numpy.ndarray
            Of the declared shape and dtype.

        Raises
        ------
        NpzError
            Over `max_bytes`, truncated, corrupt, a CRC mismatch, or compressed data that
            inflates beyond the declared size.
        """
        member = self.members[name]
        if max_bytes is not None and member.nbytes > max_bytes:
            raise NpzError(f"member {name!r} is {member.describe()}, more than the "
                           f"{max_bytes:,} bytes allowed for it")
        if member.fortran_order:
            array = np.empty(member.shape[::-1], member.dtype).T
        else:
            array = np.empty(member.shape, member.dtype)
        stream = _MemberStream(self._file, member)
        stream.read(member._header_len)  # skip the .npy header, already parsed
        if member.nbytes:
            flat = array.T if member.fortran_order else array
            stream.readinto(memoryview(flat.reshape(-1).view(np.uint8)))
        stream.finish()
        return array
