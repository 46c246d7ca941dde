"""`cnnframe layers`: list the registered layer types, including plugins and plugin failures."""
import inspect


def add_parser(subparsers):
    p = subparsers.add_parser(
        "layers", help="list registered layer types (built-in and plugins)",
        description="List every registered layer type with its config keys and origin "
                    "(built-in or the plugin package), and report plugins that failed to load.")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="also print each layer's config keys and defaults")
    p.set_defaults(func=run)


def _keys(cls):
    parts = []
    for key, default in cls.config_keys().items():
        parts.append(key if default is inspect.Parameter.empty else f"{key}={default!r}")
    return ", ".join(parts)


def run(args):
    from cnnframe import registry
    names = registry.available_layers()
    origins = {name: registry.layer_origin(name) for name in names}
    width = max(len(n) for n in names)
    origin_width = max(len(o) for o in origins.values())   # plugin names can be long
    for name in names:
        cls = registry.get_layer(name)
        print(f"{name:<{width}}  {origins[name]:<{origin_width}}  "
              f"{cls.__module__}.{cls.__qualname__}")
        if getattr(args, "verbose", False):
            print(f"{'':{width}}    ({_keys(cls)})")
    errors = registry.plugin_errors()
    for err in errors:
        print(f"FAILED plugin: {err}")
    return 1 if errors else 0
