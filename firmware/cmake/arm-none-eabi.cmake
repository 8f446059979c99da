# dqa-mcu: CMake toolchain file for bare-metal Arm Cortex-M (arm-none-eabi-gcc).
#
#   cmake -S <project> -B <build> -DDQA_TARGET=cortex-m7 \
#         -DCMAKE_TOOLCHAIN_FILE=<firmware>/cmake/arm-none-eabi.cmake
#
# Only selects the cross compiler and binutils.  CPU flags, startup code,
# linker script and semihosting specs are added per executable by
# dqa_add_firmware() (dqa_targets.cmake), based on DQA_TARGET.
# Debian: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi
# Set DQA_ARM_TOOLCHAIN_DIR (e.g. /opt/arm-gnu-toolchain/bin) to use a
# toolchain that is not on PATH.

set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)

set(_dqa_tc_hints)
if(DEFINED DQA_ARM_TOOLCHAIN_DIR)
  list(APPEND _dqa_tc_hints "${DQA_ARM_TOOLCHAIN_DIR}")
elseif(DEFINED ENV{DQA_ARM_TOOLCHAIN_DIR})
  list(APPEND _dqa_tc_hints "$ENV{DQA_ARM_TOOLCHAIN_DIR}")
endif()

find_program(DQA_ARM_GCC arm-none-eabi-gcc HINTS ${_dqa_tc_hints})
if(NOT DQA_ARM_GCC)
  message(FATAL_ERROR
    "arm-none-eabi-gcc not found. Install it (Debian/Ubuntu: "
    "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi) or set "
    "DQA_ARM_TOOLCHAIN_DIR to its bin directory.")
endif()
get_filename_component(_dqa_tc_bin "${DQA_ARM_GCC}" DIRECTORY)

set(CMAKE_C_COMPILER   "${_dqa_tc_bin}/arm-none-eabi-gcc")
set(CMAKE_CXX_COMPILER "${_dqa_tc_bin}/arm-none-eabi-g++")
set(CMAKE_ASM_COMPILER "${_dqa_tc_bin}/arm-none-eabi-gcc")
set(CMAKE_AR           "${_dqa_tc_bin}/arm-none-eabi-ar" CACHE FILEPATH "")
set(CMAKE_RANLIB       "${_dqa_tc_bin}/arm-none-eabi-ranlib" CACHE FILEPATH "")
set(CMAKE_OBJCOPY      "${_dqa_tc_bin}/arm-none-eabi-objcopy" CACHE FILEPATH "")
set(CMAKE_OBJDUMP      "${_dqa_tc_bin}/arm-none-eabi-objdump" CACHE FILEPATH "")
set(CMAKE_SIZE         "${_dqa_tc_bin}/arm-none-eabi-size" CACHE FILEPATH "")

# Compiler checks cannot link a bare-metal program without startup code and
# a linker script: only compile them.
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES DQA_ARM_TOOLCHAIN_DIR)

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
