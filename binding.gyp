{
  # The CAPA native code. "capa" is the Node addon (build/Release/capa.node);
  # the C core under native/core is plain C99 so the LD_PRELOAD library can
  # link the same sources from a shared_library target added beside it.
  "variables": {
    "capa_core_sources": [
      "native/core/pin.c",
      "native/core/sockaddr.c",
      "native/core/netlink.c"
    ],
    # capa-run: launcher, supervisor, and the library's socket step they run on the target's sockets.
    "capa_run_sources": [
      "native/launcher/capa_run.c",
      "native/launcher/program.c",
      "native/launcher/settle.c",
      "native/supervisor/supervise.c",
      "native/preload/allocations.c",
      "native/preload/config.c",
      "native/preload/dns_client.c",
      "native/preload/ledger.c",
      "native/preload/log.c",
      "native/preload/lookup.c",
      "native/preload/pins.c",
      "native/preload/release.c",
      "native/preload/supervisor_link.c",
      "native/preload/terminal.c",
      "native/core/capa_update.c",
      "native/core/capa_judge.c",
      "native/core/address_sweep.c",
      "native/core/socket_table.c",
      "native/core/capa_codec.c",
      "native/core/pin.c",
      "native/core/sockaddr.c",
      "native/core/netlink.c"
    ],
    # Tidying an interface's idle CAPA addresses: capa-socket (through the addon) and capa-run.
    "capa_sweep_sources": [
      "native/core/address_sweep.c",
      "native/core/capa_codec.c",
      "native/core/socket_table.c"
    ]
  },
  "target_defaults": {
    "cflags": ["-Wall", "-Wextra"],
    "cflags_c": ["-std=c99"]
  },
  "targets": [
    {
      "target_name": "capa",
      "sources": ["native/addon/addon.cc", "native/core/nft_set.c", "<@(capa_core_sources)", "<@(capa_sweep_sources)"],
      "dependencies": [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"
      ],
      "defines": ["NAPI_VERSION=8"],
      "cflags_cc": ["-std=c++17"]
    },
    {
      # capa-run's LD_PRELOAD library (build/Release/libcapa_preload.so). Only the
      # interposed libc symbols are exported.
      "target_name": "capa_preload",
      "type": "shared_library",
      "product_prefix": "lib",
      "product_dir": "<(PRODUCT_DIR)",
      "sources": [
        "native/preload/allocations.c",
        "native/preload/config.c",
        "native/preload/dns_client.c",
        "native/preload/exec_check.c",
        "native/preload/handback.c",
        "native/preload/hooks.c",
        "native/preload/ledger.c",
        "native/preload/local_names.c",
        "native/preload/log.c",
        "native/preload/lookup.c",
        "native/preload/names.c",
        "native/preload/pins.c",
        "native/preload/real.c",
        "native/preload/release.c",
        "native/preload/supervisor_link.c",
        "native/preload/terminal.c",
        "native/core/capa_update.c",
        "native/core/capa_codec.c",
        "native/core/capa_judge.c",
        "<@(capa_core_sources)"
      ],
      "cflags": ["-fvisibility=hidden"],
      "libraries": ["-ldl", "-lpthread"]
    },
    {
      # capa-run itself (build/Release/capa-run): the launcher, and the seccomp supervisor it
      # forks for what the LD_PRELOAD library cannot reach (the library's socket step, run on
      # the target's sockets). Linked statically, with musl where it is installed
      # (cc-static.sh): the dynamic loader and glibc's start cost every run about 1 ms.
      "target_name": "capa_run",
      "type": "none",
      "actions": [
        {
          "action_name": "link_capa_run",
          "inputs": ["native/launcher/cc-static.sh", "<@(capa_run_sources)", "<!@(ls native/*/*.h)"],
          "outputs": ["<(PRODUCT_DIR)/capa-run"],
          "action": ["sh", "native/launcher/cc-static.sh", "<(PRODUCT_DIR)/capa-run", "<@(capa_run_sources)"]
        }
      ]
    }
  ]
}
