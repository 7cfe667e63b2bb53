{
  # The CAPA native code. "capa" is the Node addon (build/Release/capa.node);
  # the C core under native/core is plain C99 so the LD_PRELOAD library can
  # link the same sources from a shared_library target added beside it.
  "variables": {
    "capa_core_sources": [
      "native/core/pin.c",
      "native/core/netlink.c"
    ]
  },
  "target_defaults": {
    "cflags": ["-Wall", "-Wextra"],
    "cflags_c": ["-std=c99"]
  },
  "targets": [
    {
      "target_name": "capa",
      "sources": ["native/addon/addon.cc", "<@(capa_core_sources)"],
      "dependencies": [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"
      ],
      "defines": ["NAPI_VERSION=8"],
      "cflags_cc": ["-std=c++17"]
    }
  ]
}
