# The SO_ORIGINAL_DST addon: one C file against Node-API only (no node-addon-api), so it
# builds with node-gyp and the Node headers alone. Built by scripts/build-native.js.
{
  "targets": [
    {
      "target_name": "original_dst",
      "sources": ["original_dst.c"],
      "cflags": ["-Wall", "-Wextra"]
    }
  ]
}
