# libfuse 3.10 is the oldest we build against (Ubuntu 22.04 LTS ships 3.10.5);
# check-libfuse.cjs says so and stops the build where pkg-config finds an older
# one (npm then leaves this optional binding out and mounts use libfuse 2).
# One build loads on libfuse 3.10 and later, and takes 3.12's loop where the
# loaded libfuse has it (sosfuse3.c, "The loop API"). SOSFUSE3_PRE_312_LOOP=1
# in the environment keeps the old loop on any libfuse (what 3.10 and 3.11
# run), to build and test that path on a current machine.
{
  "variables": {
    "pre_312_loop": "<!(node -p \"process.env.SOSFUSE3_PRE_312_LOOP === '1' ? 1 : 0\")",
    "libfuse_checked": "<!(node check-libfuse.cjs)"
  },
  "targets": [{
    "target_name": "sosfuse3",
    "sources": ["sosfuse3.c"],
    "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "<!@(pkg-config --cflags fuse3)"],
    "libraries": ["<!@(pkg-config --libs fuse3)", "-ldl"],
    "conditions": [["pre_312_loop == 1", { "defines": ["SOSFUSE3_PRE_312_LOOP"] }]]
  }]
}
