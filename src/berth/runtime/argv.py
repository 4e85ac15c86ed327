"""The option parser of berth-runtime's verbs, which `berth run` shares (it needs none of
the rest of the runtime's command line): a table maps each option to (destination,
takes a value, may repeat)."""

from __future__ import annotations


def parse(argv: list[str], table: dict, stop_at_arg: bool = False
          ) -> tuple[dict, list[str]]:
    from berth.runtime.errors import UsageError

    opts: dict = {}
    args: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            args += argv[i + 1:]
            break
        if a.startswith("-") and len(a) > 1 and not (stop_at_arg and args):
            name, eq, val = a.partition("=")
            if name not in table:
                raise UsageError(f"unknown option {name}")
            dest, takes, many = table[name]
            if takes:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        raise UsageError(f"option {name} needs a value")
                    val = argv[i]
                if many:
                    opts.setdefault(dest, []).append(val)
                else:
                    opts[dest] = val
            else:
                opts[dest] = val.lower() not in ("false", "0") if eq else True
        else:
            args.append(a)
            if stop_at_arg:
                args += argv[i + 1:]
                break
        i += 1
    return opts, args
