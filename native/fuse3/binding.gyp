# libfuse 3.10 is the oldest we build against (Ubuntu 22.04 LTS ships 3.10.5);
# check-libfuse.cjs says so and stops the build where pkg-config finds an older
# one (npm then leaves this optional binding out and mounts use libfuse 2).
# SOSFUSE3_PRE_312_LOOP=1 in the environment builds the pre-3.12 loop on a
# newer libfuse too (how that path is built and tested on a current machine).
{
  "variables": {
    "pre_312_loop": "<!(node -p \"process.env.SOSFUSE3_PRE_312_LOOP === '1' ? 1 : 0\")",
    "libfuse_checked": "<!(node check-libfuse.cjs)"
  },
  "targets": [{
    "target_name": "sosfuse3",
    "sources": ["sosfuse3.c"],
    "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "<!@(pkg-config --cflags fuse3)"],
    "libraries": ["<!@(pkg-config --libs fuse3)"],
    "conditions": [["pre_312_loop == 1", { "defines": ["SOSFUSE3_PRE_312_LOOP"] }]]
  }]
}
