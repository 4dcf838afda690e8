/*
 * The board port: what a board provides to board_cortexm.c. Every function has a weak default in
 * board_cortexm.c (a board with no UART, sensors or motor), so a port overrides only what it has.
 */
#ifndef BPD_BOARD_H
#define BPD_BOARD_H

#include <stddef.h>
#include <stdint.h>

#include "bpd_fw.h"

#ifndef BOARD_CPU_HZ
#define BOARD_CPU_HZ 168000000u
#endif

void board_init(void);                                 /* clocks, pins, UARTs */
void board_uart_write(const uint8_t *data, size_t len); /* bytes to the host (blocking) */
void board_uart_rx_byte(uint8_t b);                    /* the port calls this for each byte from the host */
void board_read_sensors(float *raw, uint8_t n);        /* raw readings: positions or counts, then velocities */
void board_write_actuator(const float *u, uint8_t n);  /* the motor command, rig units */
void board_idle(void);                                 /* nothing to do: sleep (WFI), called with interrupts masked */
uint32_t board_cycles(void);                           /* free-running processor cycles */
uint32_t board_systick_cycles(void);                   /* the same from SysTick (no DWT needed) */
uint32_t board_systick_us(void);                       /* microseconds from SysTick, wrapping at 2^32 */
uint32_t board_now_us(void);                           /* the device clock: free-running microseconds */
int board_tick_due(bpd_fw_t *fw);                      /* once per main-loop pass: 1 when a tick is due */
int board_tick_pending(void);                          /* board_tick_due has work, unconsumed: before board_idle */
void board_after_tick(bpd_fw_t *fw, uint32_t tick_cycles, uint32_t policy_cycles);

#endif /* BPD_BOARD_H */
