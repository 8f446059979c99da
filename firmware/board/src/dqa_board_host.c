/*
 * dqa_board_host.c - dqa_board.h for host builds (plain gcc, tests,
 * sanitizers).  Instructions are only counted on QEMU: here the counter is
 * always 0.
 */
#include "dqa_board.h"

#ifndef DQA_BOARD_NAME
#define DQA_BOARD_NAME "host"
#endif

void dqa_board_init(void)
{
}

uint64_t dqa_board_instructions(void)
{
    return 0u;
}

const char *dqa_board_name(void)
{
    return DQA_BOARD_NAME;
}
