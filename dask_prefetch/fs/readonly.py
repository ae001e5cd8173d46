"""Read-only by construction: an allow-list of the methods that read, every other method refused.

:func:`allow_only_reading` replaces, on a filesystem class, every method of its bases that is not
named in :data:`READING_METHODS` (public or private, sync or async, inherited from fsspec or
s3fs) by one that raises ``PermissionError``. A method a future s3fs or fsspec adds is therefore
refused until someone has read it and listed it here; nothing that writes, copies, deletes, tags
or manages uploads can slip through. Two allowed methods can be asked to do writes, and are
checked by their arguments instead: ``call_s3`` (only S3 read operations, :data:`READ_OPERATIONS`)
and ``url``/``sign`` (presigned URLs for ``get_object`` and ``head_object`` only).

A wrapper filesystem that holds another one (``S3PrefetchFileSystem`` holds an s3fs) is given the
held class's surface as well: ``allow_only_reading(cls, target)`` also refuses every method of
``target`` that is not a reading one, so the wrapper answers ``PermissionError`` to all of s3fs's
writing methods, not ``AttributeError``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

#: Methods that only read the store (or only work on paths, sessions and caches), by name.
#: ``_x`` async twins of fsspec's sync methods are listed too. Anything else is refused.
READING_METHODS = frozenset(
    """
    cat cat_file cat_ranges checksum created disk_usage du exists expand_path find get get_file download
    get_mapper get_tags getxattr glob head info invalidate_cache invalidate_region_cache is_bucket_versioned
    isdir isfile lexists list_multipart_uploads listdir ls metadata modified object_version_info open
    open_async read_block read_bytes read_text size sizes split_path stat tail to_dict to_json tree ukey
    unstrip_protocol walk connect set_session get_s3 get_delegated_s3pars call_s3 url sign
    clear_instance_cache current from_dict from_json close_session
    _cat _cat_file _cat_file_concurrent _cat_ranges _checksum _connect _du _exists _exists_in_cache
    _expand_path _find _find_bucket_key _get _get_file _download_file_part_concurrent _get_delegated_s3pars
    _get_s3_method_kwargs _getxattr _glob _info _invalidate_region_cache _is_bucket_versioned _isdir _isfile
    _isfilestore _iterdir _list_multipart_uploads _list_pages _ls _ls_from_cache _lsbuckets _lsdir _metadata
    _object_version_info _open _prepare_config_kwargs _process_limits _size _sizes _url _walk _filter_kwargs
    _call_s3 _strip_protocol _parent _get_kwargs_from_urls _fill_info
    """.split()
)

#: S3 API operations ``call_s3`` may send: reads only.
READ_OPERATIONS = frozenset(
    """
    head_object get_object get_object_attributes get_object_tagging get_object_acl list_objects list_objects_v2
    list_object_versions list_buckets head_bucket get_bucket_location get_bucket_versioning list_multipart_uploads
    list_parts
    """.split()
)

#: Presigned URLs ``url`` may hand out: they read too.
READ_URL_METHODS = frozenset({"get_object", "head_object"})


def refused(name: str, owner: str) -> PermissionError:
    """The error every refused method raises."""
    return PermissionError(f"{owner} is read-only: {name.lstrip('_')}() is not allowed")


def _refusing(name: str, owner: str, is_async: bool) -> Callable[..., Any]:
    if is_async:

        async def refuse_async(self: Any, *args: Any, **kwargs: Any) -> Any:
            raise refused(name, owner)

        refuse: Callable[..., Any] = refuse_async
    else:

        def refuse_sync(self: Any, *args: Any, **kwargs: Any) -> Any:
            raise refused(name, owner)

        refuse = refuse_sync
    refuse.__name__ = refuse.__qualname__ = name
    refuse.__doc__ = f"Not allowed: {owner} is read-only (raises PermissionError)."
    refuse._refuses = True  # type: ignore[attr-defined]  # a subclass re-makes it in its own name
    return refuse


def _own(cls: type, name: str) -> bool:
    """Whether the class that gives ``cls`` its ``name`` is one of this package's (its own business)."""
    owner = next((c for c in cls.__mro__ if name in c.__dict__), None)
    return owner is not None and owner.__module__.split(".")[0] == __name__.split(".")[0]


def _is_method(attribute: Any) -> bool:
    return isinstance(attribute, (staticmethod, classmethod)) or inspect.isfunction(attribute)


def _method(cls: type, name: str, targets: tuple[type, ...]) -> Any:
    """``cls``'s attribute ``name``, else the first target's (None if neither has it)."""
    for owner in (cls, *targets):
        attribute = inspect.getattr_static(owner, name, None)
        if attribute is not None:
            return attribute
    return None


def refused_methods(cls: type, *targets: type) -> list[str]:
    """Names of the methods of ``cls``'s bases (and of the ``targets`` classes) that
    :func:`allow_only_reading` refuses on ``cls``."""
    names = []
    for name in sorted(set(dir(cls)).union(*(dir(t) for t in targets))):
        if name.startswith("__") or name in READING_METHODS:
            continue
        attribute = _method(cls, name, targets)
        if hasattr(cls, name) and _own(cls, name) and not getattr(attribute, "_refuses", False):
            continue
        if _is_method(attribute):
            names.append(name)
    return names


def allow_only_reading(cls: type, *targets: type) -> type:
    """Class decorator: refuse every inherited method not in :data:`READING_METHODS`.

    Methods defined by this package's classes (``cls`` and its mixins) are their own business:
    they must keep themselves read-only. Refusals inherited from such a class are made again in
    ``cls``'s name. ``targets``: classes of filesystems ``cls`` holds and forwards to (called as
    ``allow_only_reading(cls, target)``); their methods outside the allow-list are refused on
    ``cls`` too, whether or not ``cls`` has them.
    """
    for name in refused_methods(cls, *targets):
        function = _method(cls, name, targets)
        function = getattr(function, "__func__", function)
        setattr(cls, name, _refusing(name, cls.__name__, inspect.iscoroutinefunction(function)))
    return cls


def check_operation(operation: Any, owner: str) -> None:
    """Refuse an S3 operation that is not a read (for ``call_s3``).

    Raises
    ------
    PermissionError
        Naming the operation.
    """
    name = getattr(operation, "__name__", operation)
    if name not in READ_OPERATIONS:
        raise PermissionError(f"{owner} is read-only: call_s3({name!r}) is not allowed (reads only)")


def check_url_method(client_method: Any, owner: str) -> None:
    """Refuse a presigned URL for anything but reading (for ``url``).

    Raises
    ------
    PermissionError
        Naming the client method.
    """
    if client_method not in READ_URL_METHODS:
        raise PermissionError(
            f"{owner} is read-only: url(client_method={client_method!r}) is not allowed (get_object or head_object)"
        )
