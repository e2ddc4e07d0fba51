"""A fake xdg-desktop-portal Access backend that allows every request, for headless tests.

xdg-desktop-portal (1.16) exports its Camera portal only when some
``org.freedesktop.impl.portal.Access`` backend exists, and the real ones need a display.
This one answers every ``AccessDialog`` with 0 (allow). Run it with the system Python
(Debian's python3-gi) on the session bus, with ``portals/fakeaccess.portal`` in
``$XDG_DESKTOP_PORTAL_DIR`` and ``XDG_CURRENT_DESKTOP=fake``. It prints ``ready`` once it
owns its name, and exits when the bus goes away or after ``argv[1]`` seconds (default 300).
"""

import sys

import gi

gi.require_version("Gio", "2.0")
from gi.repository import Gio, GLib  # noqa: E402

NAME = "org.freedesktop.impl.portal.desktop.fakeaccess"
XML = """<node><interface name="org.freedesktop.impl.portal.Access">
<method name="AccessDialog">
<arg type="o" name="handle" direction="in"/><arg type="s" name="app_id" direction="in"/>
<arg type="s" name="parent_window" direction="in"/><arg type="s" name="title" direction="in"/>
<arg type="s" name="subtitle" direction="in"/><arg type="s" name="body" direction="in"/>
<arg type="a{sv}" name="options" direction="in"/>
<arg type="u" name="response" direction="out"/><arg type="a{sv}" name="results" direction="out"/>
</method></interface></node>"""


def main() -> None:
    lifetime = float(sys.argv[1]) if len(sys.argv) > 1 else 300.0
    loop = GLib.MainLoop()

    # Gio's method-call callback signature: (connection, sender, path, interface, method,
    # parameters, invocation).
    def call(*args: object) -> None:
        method, params, invocation = args[4:]
        print(f"{method} {params.unpack()[1:4]} -> allow", flush=True)
        invocation.return_value(GLib.Variant("(ua{sv})", (0, {})))

    def acquired(*_: object) -> None:
        print("ready", flush=True)

    def lost(*_: object) -> None:
        print(f"lost {NAME}", flush=True)
        loop.quit()

    bus = Gio.bus_get_sync(Gio.BusType.SESSION)
    iface = Gio.DBusNodeInfo.new_for_xml(XML).interfaces[0]
    bus.register_object("/org/freedesktop/portal/desktop", iface, call, None, None)
    Gio.bus_own_name_on_connection(bus, NAME, Gio.BusNameOwnerFlags.NONE, acquired, lost)
    GLib.timeout_add_seconds(int(lifetime), loop.quit)
    loop.run()


if __name__ == "__main__":
    main()
