# dqa-mcu: build generated firmware for the QEMU Cortex-M machines, the STM32
# Nucleo boards or the host.
#
# Usage in a project's CMakeLists.txt:
#
#   cmake_minimum_required(VERSION 3.16)
#   set(DQA_TARGET cortex-m7)              # or pass -DDQA_TARGET=...; default host
#   include(${DQA_FIRMWARE_DIR}/cmake/dqa_targets.cmake)
#   project(my_model C)
#   dqa_add_firmware(my_model SOURCES main.c model.c
#                    [TARGET <cortex-m3|cortex-m4|cortex-m7|cortex-m33|cortex-m55|
#                             nucleo-f446re|nucleo-f767zi|nucleo-l4r5zi|nucleo-h743zi|host>]
#                    [INCLUDE_DIRS dir...] [DEFINITIONS FOO=1 ...]
#                    [LINK_LIBRARIES lib...] [MIN_STACK_HEAP bytes])
#
# Including this file BEFORE project() selects the arm-none-eabi toolchain
# automatically for Cortex-M targets.  When it is included after project(),
# configure with -DCMAKE_TOOLCHAIN_FILE=${DQA_FIRMWARE_DIR}/cmake/arm-none-eabi.cmake
# (a clear error is raised otherwise).
#
# Results (Cortex-M): <name>.elf (+ .bin, .hex, .map) in the target's binary
# directory, `arm-none-eabi-size` printed after linking, and a custom target
# `run-<name>` that runs it in QEMU (a board: only nucleo-f446re, under
# netduinoplus2 with USART2 on the terminal; stop it with Ctrl-a x).  Host:
# executable <name>; `run-<name>` runs it.
#
# Variables:
#   DQA_TARGET        target name (see table below); default "host"
#   DQA_FIRMWARE_DIR  the firmware/ directory (set by this file if unset)
#   DQA_SANITIZE      ON: host builds get -fsanitize=address,undefined
#                     -fno-sanitize-recover=all (ignored for Cortex-M)
# Set by this file for the current DQA_TARGET:
#   DQA_QEMU_MACHINE  e.g. mps2-an500 ("" for host and the boards QEMU lacks)
#   DQA_CPU_FLAGS     gcc CPU flags (list)
#   DQA_QEMU_COMMAND  full qemu-system-arm command line minus the ELF (list)
# Target properties on each executable: DQA_TARGET, DQA_QEMU_MACHINE.

include_guard(GLOBAL)
cmake_minimum_required(VERSION 3.16)

get_filename_component(_dqa_default_fw_dir "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
if(NOT DEFINED DQA_FIRMWARE_DIR)
  set(DQA_FIRMWARE_DIR "${_dqa_default_fw_dir}")
endif()
set(DQA_BOARD_DIR "${_dqa_default_fw_dir}/board")

if(NOT DEFINED DQA_TARGET OR "${DQA_TARGET}" STREQUAL "")
  set(DQA_TARGET host)
endif()
option(DQA_SANITIZE "Host builds: AddressSanitizer + UBSan, abort on first error" OFF)

set(DQA_SUPPORTED_TARGETS cortex-m3 cortex-m4 cortex-m7 cortex-m33 cortex-m55
    nucleo-f446re nucleo-f767zi nucleo-l4r5zi nucleo-h743zi host)

# dqa_target_info(<target> <prefix>): sets <prefix>_QEMU_MACHINE,
# <prefix>_CPU_FLAGS, <prefix>_LINKER_SCRIPT, <prefix>_CPU_HZ and, for a
# board, <prefix>_BOARD_SOURCES, <prefix>_IRQ_COUNT, <prefix>_LINK_FLAGS in
# the caller (<prefix>_BOARD_SOURCES is empty for the QEMU machines and host).
#   CPU_HZ: SysTick (processor) clock of the QEMU machine; with -icount shift=0
#   one instruction = 1 ns, so instructions per SysTick tick = 1e9 / CPU_HZ.
#   (A board measures its clock itself: dqa_board_stm32.c.)
function(dqa_target_info target prefix)
  set(ld "${DQA_BOARD_DIR}/ld")
  set(src "${DQA_BOARD_DIR}/src")
  set(board_sources "")
  set(irqs "")
  set(link_flags "")
  if(target STREQUAL "cortex-m3")
    set(machine mps2-an385)
    set(flags -mcpu=cortex-m3 -mthumb)
    set(script "${ld}/mps2_an385.ld")
    set(hz 25000000)
  elseif(target STREQUAL "cortex-m4")
    set(machine mps2-an386)
    set(flags -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16)
    set(script "${ld}/mps2_an386.ld")
    set(hz 25000000)
  elseif(target STREQUAL "cortex-m7")
    set(machine mps2-an500)
    set(flags -mcpu=cortex-m7 -mthumb -mfloat-abi=hard -mfpu=fpv5-d16)
    set(script "${ld}/mps2_an500.ld")
    set(hz 25000000)
  elseif(target STREQUAL "cortex-m33")
    set(machine mps2-an505)
    set(flags -mcpu=cortex-m33 -mthumb -mfloat-abi=hard -mfpu=fpv5-sp-d16)
    set(script "${ld}/mps2_an505.ld")
    set(hz 20000000)
  elseif(target STREQUAL "cortex-m55")
    set(machine mps3-an547)
    # -mcpu=cortex-m55 enables MVE (integer + float) and double-precision FP.
    set(flags -mcpu=cortex-m55 -mthumb -mfloat-abi=hard)
    set(script "${ld}/mps3_an547.ld")
    set(hz 32000000)
  elseif(target STREQUAL "nucleo-f446re")
    set(machine netduinoplus2)  # an STM32F405: the same image runs there
    set(flags -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16)
    set(script "${ld}/nucleo_f446re.ld")
    set(board_sources "${src}/nucleo_f446re.c" "${src}/stm32_f4f7_clock.c")
    set(irqs 97)
  elseif(target STREQUAL "nucleo-f767zi")
    set(machine "")
    set(flags -mcpu=cortex-m7 -mthumb -mfloat-abi=hard -mfpu=fpv5-d16)
    set(script "${ld}/nucleo_f767zi.ld")
    set(board_sources "${src}/nucleo_f767zi.c" "${src}/stm32_f4f7_clock.c")
    set(irqs 110)
  elseif(target STREQUAL "nucleo-l4r5zi")
    set(machine "")
    set(flags -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16)
    set(script "${ld}/nucleo_l4r5zi.ld")
    set(board_sources "${src}/nucleo_l4r5zi.c")
    set(irqs 95)
  elseif(target STREQUAL "nucleo-h743zi")
    set(machine "")
    set(flags -mcpu=cortex-m7 -mthumb -mfloat-abi=hard -mfpu=fpv5-d16)
    set(script "${ld}/nucleo_h743zi.ld")
    set(board_sources "${src}/nucleo_h743zi.c")
    set(irqs 150)
    # the arena falls through from the DTCM to the AXI SRAM when too big (nucleo_h743zi.ld)
    set(link_flags -Wl,--enable-non-contiguous-regions)
  elseif(target STREQUAL "host")
    set(machine "")
    set(flags "")
    set(script "")
    set(hz 0)
  else()
    message(FATAL_ERROR
      "dqa: unknown DQA target '${target}' (supported: ${DQA_SUPPORTED_TARGETS})")
  endif()
  set(${prefix}_QEMU_MACHINE "${machine}" PARENT_SCOPE)
  set(${prefix}_CPU_FLAGS "${flags}" PARENT_SCOPE)
  set(${prefix}_LINKER_SCRIPT "${script}" PARENT_SCOPE)
  set(${prefix}_CPU_HZ "${hz}" PARENT_SCOPE)
  set(${prefix}_BOARD_SOURCES "${board_sources}" PARENT_SCOPE)
  set(${prefix}_IRQ_COUNT "${irqs}" PARENT_SCOPE)
  set(${prefix}_LINK_FLAGS "${link_flags}" PARENT_SCOPE)
  if(board_sources AND machine)
    # no semihosting on a board: its console UART (USART2, the second -serial) on the terminal,
    # muxed with the monitor (Ctrl-a x quits: the firmware never exits)
    set(qemu qemu-system-arm -M ${machine} -display none -serial null -serial mon:stdio -icount shift=0 -kernel)
  elseif(machine)
    set(qemu qemu-system-arm -M ${machine} -nographic
        -semihosting-config enable=on,target=native -icount shift=0 -kernel)
  else()
    set(qemu "")
  endif()
  set(${prefix}_QEMU_COMMAND "${qemu}" PARENT_SCOPE)
endfunction()

dqa_target_info("${DQA_TARGET}" DQA)

# Toolchain selection.
get_property(_dqa_langs GLOBAL PROPERTY ENABLED_LANGUAGES)
if(NOT DQA_TARGET STREQUAL "host")
  if(NOT "C" IN_LIST _dqa_langs)
    # Included before project(): pick the cross toolchain ourselves.
    if(NOT CMAKE_TOOLCHAIN_FILE)
      set(CMAKE_TOOLCHAIN_FILE "${_dqa_default_fw_dir}/cmake/arm-none-eabi.cmake")
    endif()
  elseif(NOT CMAKE_C_COMPILER MATCHES "arm-none-eabi-gcc")
    message(FATAL_ERROR
      "dqa: DQA_TARGET=${DQA_TARGET} needs the arm-none-eabi toolchain but the C "
      "compiler is ${CMAKE_C_COMPILER}. Configure a fresh build directory with "
      "-DCMAKE_TOOLCHAIN_FILE=${_dqa_default_fw_dir}/cmake/arm-none-eabi.cmake "
      "or include dqa_targets.cmake before project().")
  endif()
endif()

# dqa_add_firmware(<name> SOURCES src... [TARGET t] [INCLUDE_DIRS d...]
#                  [DEFINITIONS d...] [LINK_LIBRARIES l...] [MIN_STACK_HEAP n])
function(dqa_add_firmware name)
  cmake_parse_arguments(PARSE_ARGV 1 ARG ""
    "TARGET;MIN_STACK_HEAP" "SOURCES;INCLUDE_DIRS;DEFINITIONS;LINK_LIBRARIES")
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "dqa_add_firmware(${name}): unexpected arguments: ${ARG_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "dqa_add_firmware(${name}): SOURCES is required")
  endif()
  if(NOT ARG_TARGET)
    set(ARG_TARGET "${DQA_TARGET}")
  endif()
  dqa_target_info("${ARG_TARGET}" T)

  set(warn -Wall -Wextra -Werror)
  set(board_inc "${DQA_BOARD_DIR}/include")

  if(ARG_TARGET STREQUAL "host")
    if(CMAKE_C_COMPILER MATCHES "arm-none-eabi")
      message(FATAL_ERROR "dqa_add_firmware(${name}): TARGET host needs a host compiler, "
                          "but this build directory uses ${CMAKE_C_COMPILER}")
    endif()
    add_executable(${name} ${ARG_SOURCES} "${DQA_BOARD_DIR}/src/dqa_board_host.c")
    target_compile_definitions(${name} PRIVATE DQA_BOARD_HOST=1
      "DQA_BOARD_NAME=\"host\"" ${ARG_DEFINITIONS})
    target_compile_options(${name} PRIVATE ${warn} -O2)
    if(DQA_SANITIZE)
      set(san -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g)
      target_compile_options(${name} PRIVATE ${san})
      target_link_options(${name} PRIVATE ${san})
    endif()
    target_link_libraries(${name} PRIVATE m)
    add_custom_target(run-${name} COMMAND $<TARGET_FILE:${name}>
      DEPENDS ${name} USES_TERMINAL)
  else()
    if(NOT CMAKE_C_COMPILER MATCHES "arm-none-eabi-gcc")
      message(FATAL_ERROR "dqa_add_firmware(${name}): TARGET ${ARG_TARGET} needs "
        "-DCMAKE_TOOLCHAIN_FILE=${_dqa_default_fw_dir}/cmake/arm-none-eabi.cmake")
    endif()
    if(T_BOARD_SOURCES)
      # a real board: its clock, UART console and cycle counter; newlib's plain crt0
      add_executable(${name} ${ARG_SOURCES}
        "${DQA_BOARD_DIR}/src/startup_cortexm.c"
        "${DQA_BOARD_DIR}/src/dqa_systick.c"
        "${DQA_BOARD_DIR}/src/dqa_board_stm32.c"
        ${T_BOARD_SOURCES})
      target_compile_definitions(${name} PRIVATE DQA_BOARD_STM32=1
        "DQA_BOARD_IRQ_COUNT=${T_IRQ_COUNT}" ${ARG_DEFINITIONS})
      set(specs "")
    else()
      add_executable(${name} ${ARG_SOURCES}
        "${DQA_BOARD_DIR}/src/startup_cortexm.c"
        "${DQA_BOARD_DIR}/src/dqa_systick.c"
        "${DQA_BOARD_DIR}/src/dqa_board_qemu.c")
      target_compile_definitions(${name} PRIVATE DQA_BOARD_QEMU=1
        "DQA_BOARD_CPU_HZ=${T_CPU_HZ}u"
        "DQA_BOARD_NAME=\"${T_QEMU_MACHINE} (${ARG_TARGET})\""
        ${ARG_DEFINITIONS})
      set(specs --specs=rdimon.specs)
    endif()
    set_target_properties(${name} PROPERTIES SUFFIX ".elf")
    target_compile_options(${name} PRIVATE ${T_CPU_FLAGS} ${warn} -O2 -g
      -ffunction-sections -fdata-sections)
    set(link_opts ${T_CPU_FLAGS} ${specs} ${T_LINK_FLAGS}
      -L${DQA_BOARD_DIR}/ld -T${T_LINKER_SCRIPT}
      -Wl,--gc-sections -Wl,-Map=$<TARGET_FILE_DIR:${name}>/${name}.map
      -Wl,--print-memory-usage)
    if(ARG_MIN_STACK_HEAP)
      list(APPEND link_opts -Wl,--defsym=DQA_MIN_STACK_HEAP=${ARG_MIN_STACK_HEAP})
    endif()
    target_link_options(${name} PRIVATE ${link_opts})
    target_link_libraries(${name} PRIVATE m)
    set_property(TARGET ${name} APPEND PROPERTY LINK_DEPENDS
      "${T_LINKER_SCRIPT}" "${DQA_BOARD_DIR}/ld/dqa_sections.ld")
    add_custom_command(TARGET ${name} POST_BUILD
      COMMAND ${CMAKE_OBJCOPY} -O binary $<TARGET_FILE:${name}> $<TARGET_FILE_DIR:${name}>/${name}.bin
      COMMAND ${CMAKE_OBJCOPY} -O ihex $<TARGET_FILE:${name}> $<TARGET_FILE_DIR:${name}>/${name}.hex
      COMMAND ${CMAKE_SIZE} $<TARGET_FILE:${name}>
      VERBATIM)
    if(T_QEMU_COMMAND)
      add_custom_target(run-${name}
        COMMAND ${T_QEMU_COMMAND} $<TARGET_FILE:${name}>
        DEPENDS ${name} USES_TERMINAL VERBATIM)
    endif()
  endif()

  target_include_directories(${name} PRIVATE "${board_inc}" ${ARG_INCLUDE_DIRS})
  set_target_properties(${name} PROPERTIES
    C_STANDARD 99 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF
    DQA_TARGET "${ARG_TARGET}" DQA_QEMU_MACHINE "${T_QEMU_MACHINE}")
  if(ARG_LINK_LIBRARIES)
    target_link_libraries(${name} PRIVATE ${ARG_LINK_LIBRARIES})
  endif()
endfunction()
