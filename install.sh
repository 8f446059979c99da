#!/usr/bin/env bash
# Installs what dqa-mcu needs on a fresh Debian/Ubuntu machine: the Arm GNU
# toolchain, newlib, QEMU and CMake from the distribution (and clang with its
# libFuzzer runtime, cppcheck: the reliability checks), then this package
# (editable, with its test and Keras/TFLite extras) and torch 2.13.0 (CPU)
# from PyPI.
set -euo pipefail
cd "$(dirname "$0")"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
need=()
for tool in arm-none-eabi-gcc qemu-system-arm cmake gcc clang cppcheck; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
# clang's libFuzzer and sanitizer runtimes (fuzz/run.sh) come in a package of their own
fuzzer_runtime=$(ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-*.a 2>/dev/null || true)
if [ ${#need[@]} -gt 0 ] || [ ! -d /usr/lib/arm-none-eabi/newlib ] || [ -z "$fuzzer_runtime" ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm cmake gcc make \
    clang libclang-rt-dev cppcheck >/dev/null
fi
export PIP_ROOT_USER_ACTION=ignore  # CI runs as root; the warning is noise there
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[test,tflite]"
