/*
 * STM32F405/407 board port: 168 MHz from the internal oscillator through the PLL, the host link
 * on USART1 (PA9 TX, PA10 RX, AF7) at the rig's baud rate and USART2 (PA2 TX, PA3 RX) as an
 * auxiliary port, both received by interrupt; the core sleeps (WFI) between interrupts. Sensors and the motor driver stay board_cortexm.c's
 * weak stubs until a rig's wiring overrides them; a processor-in-the-loop build links
 * plant_link.c, which drives them over USART2 from a simulated plant.
 *
 * QEMU's netduinoplus2 machine models this part (STM32F405) but not its clock tree: build with
 * -DBOARD_NO_CLOCK_TREE there (`bpd firmware build --board stm32f4-pil` does).
 */
#include <stdint.h>

#include "board.h"
#include "bpd_rig_config.h"
#include "stm32f4_rcc.h"

#define GPIOA_MODER REG(0x40020000u)
#define GPIOA_AFRL REG(0x40020020u)
#define GPIOA_AFRH REG(0x40020024u)
#define NVIC_ISER1 REG(0xE000E104u)

#define USART1_BASE 0x40011000u /* APB2, 84 MHz */
#define USART2_BASE 0x40004400u /* APB1, 42 MHz */
#define USART_SR(b) REG((b) + 0x00u)
#define USART_DR(b) REG((b) + 0x04u)
#define USART_BRR(b) REG((b) + 0x08u)
#define USART_CR1(b) REG((b) + 0x0Cu)
#define SR_RXNE (1u << 5)
#define SR_TXE (1u << 7)
#define CR1_UE (1u << 13)
#define CR1_RXNEIE (1u << 5)
#define CR1_TE (1u << 3)
#define CR1_RE (1u << 2)

#define USART1_IRQ 37u
#define USART2_IRQ 38u

#define APB1_HZ (BOARD_CPU_HZ / 4u)
#define APB2_HZ (BOARD_CPU_HZ / 2u)

#ifndef BOARD_AUX_BAUD
#define BOARD_AUX_BAUD 921600u
#endif

static void clock_tree(void)
{
#ifndef BOARD_NO_CLOCK_TREE
    /* HSI 16 MHz / M 16 * N 336 / P 2 = 168 MHz; Q 7 gives USB 48 MHz. AHB /1, APB1 /4, APB2 /2. */
    FLASH_ACR = 5u | (1u << 8) | (1u << 9) | (1u << 10); /* 5 wait states, prefetch, I and D cache */
    RCC_PLLCFGR = 16u | (336u << 6) | (0u << 16) | (7u << 24);
    RCC_CR |= 1u << 24;
    while (!(RCC_CR & (1u << 25))) {
    }
    RCC_CFGR = (5u << 10) | (4u << 13) | 2u;
    while ((RCC_CFGR & (3u << 2)) != (2u << 2)) {
    }
#endif
}

static void usart_init(uint32_t base, uint32_t bus_hz, uint32_t baud, uint32_t extra)
{
    USART_BRR(base) = (bus_hz + baud / 2u) / baud; /* oversampling by 16: mantissa and fraction */
    USART_CR1(base) = CR1_UE | CR1_TE | CR1_RE | extra;
}

static void usart_write(uint32_t base, const uint8_t *data, size_t len)
{
    size_t i;
    for (i = 0; i < len; ++i) {
        while (!(USART_SR(base) & SR_TXE)) {
        }
        USART_DR(base) = data[i];
    }
}

void board_init(void)
{
    clock_tree();
    RCC_AHB1ENR |= 1u;        /* GPIOA */
    RCC_APB2ENR |= 1u << 4;   /* USART1 */
    RCC_APB1ENR |= 1u << 17;  /* USART2 */
    /* PA2, PA3, PA9, PA10: alternate function 7 */
    GPIOA_MODER = (GPIOA_MODER & ~((3u << 4) | (3u << 6) | (3u << 18) | (3u << 20))) |
                  (2u << 4) | (2u << 6) | (2u << 18) | (2u << 20);
    GPIOA_AFRL = (GPIOA_AFRL & ~((0xFu << 8) | (0xFu << 12))) | (7u << 8) | (7u << 12);
    GPIOA_AFRH = (GPIOA_AFRH & ~((0xFu << 4) | (0xFu << 8))) | (7u << 4) | (7u << 8);
    usart_init(USART1_BASE, APB2_HZ, BPD_RIG_BAUD, CR1_RXNEIE);
    usart_init(USART2_BASE, APB1_HZ, BOARD_AUX_BAUD, CR1_RXNEIE);
    NVIC_ISER1 = (1u << (USART1_IRQ - 32u)) | (1u << (USART2_IRQ - 32u));
}

/* Bytes from the auxiliary port, filled by its interrupt. */
static volatile uint8_t aux_ring[256];
static volatile uint8_t aux_head, aux_tail;

void board_irq(unsigned n);
void board_irq(unsigned n)
{
    if (n == USART1_IRQ) {
        while (USART_SR(USART1_BASE) & SR_RXNE) board_uart_rx_byte((uint8_t)USART_DR(USART1_BASE));
    } else if (n == USART2_IRQ) {
        while (USART_SR(USART2_BASE) & SR_RXNE) {
            uint8_t b = (uint8_t)USART_DR(USART2_BASE);
            if ((uint8_t)(aux_head + 1u) != aux_tail) { /* full: dropped */
                aux_ring[aux_head] = b;
                aux_head = (uint8_t)(aux_head + 1u);
            }
        }
    }
}

/* Nothing to do until the next interrupt (a received byte, or SysTick within a millisecond); the tick is SysTick's
 * (board_cortexm.c's board_tick_due and board_tick_pending), or plant_link.c's. */
void board_idle(void) { __asm volatile("wfi"); }

void board_uart_write(const uint8_t *data, size_t len) { usart_write(USART1_BASE, data, len); }

/* The auxiliary port (USART2): plant_link.c's channel in a processor-in-the-loop build. */
void board_aux_write(const uint8_t *data, size_t len);
void board_aux_write(const uint8_t *data, size_t len) { usart_write(USART2_BASE, data, len); }

int board_aux_read(uint8_t *b);
int board_aux_read(uint8_t *b)
{
    if (aux_tail == aux_head) return 0;
    *b = aux_ring[aux_tail];
    aux_tail = (uint8_t)(aux_tail + 1u);
    return 1;
}

/* Bytes waiting on the auxiliary port, none taken: plant_link.c's tick has something to read. */
int board_aux_pending(void);
int board_aux_pending(void) { return aux_tail != aux_head; }
