/*
 * Nucleo-64 STM32F446RE board port: a real rig. The registers below are written from the reference
 * manual (RM0390) and the datasheet's alternate-function table; the pins, timers, inversions and PWM
 * come from the rig YAML's `wiring` block through the generated bpd_rig_config.h (BPD_ENC_*,
 * BPD_MOTOR_*, BPD_STOP_*), and the arithmetic from bpd_drivers.c (tested on the host).
 *
 * - Clock: 168 MHz from the internal oscillator through the PLL (APB1 42 MHz, APB2 84 MHz; timers on
 *   APB1 count at 84 MHz, on APB2 at 168 MHz).
 * - Host link: USART2 on PA2/PA3, the ST-LINK's virtual COM port (the USB cable), by interrupt.
 * - Encoders: each a timer in encoder mode (both edges of both channels: 4 counts per line), 16 bits,
 *   unwrapped into 32 bits at every tick; a reading starts at the YAML's at_power_on (a pendulum
 *   hanging at power-on reads pi, upright being 0).
 * - Motor: a timer channel's PWM (duty from bpd_pwm_from_command, limited to the rig's action limit)
 *   and a direction GPIO, for an H-bridge.
 * - End stops and emergency stop: external interrupts on both edges; a stop that closes zeroes the
 *   PWM in its interrupt, and every tick polls the levels too, so a stop commands zero within one
 *   tick even when an edge was missed; the core then ends the run (an end stop as a limit stop, the
 *   emergency stop with its own STATE flag). Until that tick takes the event every command is 0 duty
 *   (bpd_stops_blocked: both directions). While pressed, an end stop blocks the commands towards its
 *   side (a new run may drive away from it); the emergency stop (the input that blocks both directions)
 *   ends the run at every tick while it is held (bpd_stops_ending), so a START while it is held gives a
 *   run that ends at its first tick, and its release restarts nothing: only a new START does (ISO 13850).
 * - Control tick: TIM7 at the rig's period (its interrupt sets the tick due); device time from
 *   SysTick (board_cortexm.c); the cycle counter is the DWT's (the on-device inference time in every
 *   STATE of a device-mode run).
 * - An independent watchdog (IWDG, about 50 ms) restarts the processor if the main loop hangs (every pass
 *   calls board_tick_due, which reloads it; a pass takes at most one frame from the host): the
 *   pins come up as inputs (a pull-down on the H-bridge's PWM input, hil/README.md, holds it at 0 %).
 *   A fault (startup.c's Default_Handler: a hard fault masks every interrupt, the end stops' too) puts
 *   the PWM pin in that state at once and zeroes the duty, before the watchdog's restart.
 */
#include <stdint.h>

#include "board.h"
#include "bpd_drivers.h"
#include "bpd_rig_config.h"

#ifndef BPD_WIRING
#error "the nucleo-f446 board needs a rig with a wiring block (firmware_host/rig/rigs/*.yaml)"
#endif

#include "stm32f4_rcc.h" /* RCC (RM0390 section 6.3) and FLASH_ACR */

#define REG8(addr) (*(volatile uint8_t *)(addr))

/* GPIO (section 7.4): port n at 0x40020000 + 0x400 n */
#define GPIO(port) (0x40020000u + 0x400u * (uint32_t)(port))
#define GPIO_MODER(p) REG(GPIO(p) + 0x00u)
#define GPIO_PUPDR(p) REG(GPIO(p) + 0x0Cu)
#define GPIO_IDR(p) REG(GPIO(p) + 0x10u)
#define GPIO_BSRR(p) REG(GPIO(p) + 0x18u)
#define GPIO_AFR(p, pin) REG(GPIO(p) + ((pin) < 8u ? 0x20u : 0x24u))

/* Timers (sections 12-13, 17, 18): the offsets are the same on TIM1-TIM5 and TIM7 */
#define TIM_CR1(b) REG((b) + 0x00u)
#define TIM_SMCR(b) REG((b) + 0x08u)
#define TIM_DIER(b) REG((b) + 0x0Cu)
#define TIM_SR(b) REG((b) + 0x10u)
#define TIM_EGR(b) REG((b) + 0x14u)
#define TIM_CCMR1(b) REG((b) + 0x18u)
#define TIM_CCMR2(b) REG((b) + 0x1Cu)
#define TIM_CCER(b) REG((b) + 0x20u)
#define TIM_CNT(b) REG((b) + 0x24u)
#define TIM_PSC(b) REG((b) + 0x28u)
#define TIM_ARR(b) REG((b) + 0x2Cu)
#define TIM_CCR(b, ch) REG((b) + 0x34u + 4u * ((ch) - 1u))
#define TIM_BDTR(b) REG((b) + 0x44u)
#define TIM7_BASE 0x40001400u
#define TIM7_IRQ 55u

/* SYSCFG and EXTI (sections 8, 10) */
#define SYSCFG_EXTICR(n) REG(0x40013808u + 4u * (uint32_t)(n))
#define EXTI_IMR REG(0x40013C00u)
#define EXTI_RTSR REG(0x40013C08u)
#define EXTI_FTSR REG(0x40013C0Cu)
#define EXTI_PR REG(0x40013C14u)

/* USART2 (section 25) */
#define USART2_BASE 0x40004400u
#define USART_SR REG(USART2_BASE + 0x00u)
#define USART_DR REG(USART2_BASE + 0x04u)
#define USART_BRR REG(USART2_BASE + 0x08u)
#define USART_CR1 REG(USART2_BASE + 0x0Cu)
#define USART2_IRQ 38u

/* IWDG (section 19) */
#define IWDG_KR REG(0x40003000u)
#define IWDG_PR REG(0x40003004u)
#define IWDG_RLR REG(0x40003008u)

/* NVIC (Cortex-M4 generic user guide, 4.2) */
#define NVIC_ISER(n) REG(0xE000E100u + 4u * (uint32_t)(n))
#define NVIC_IPR(irq) REG8(0xE000E400u + (uint32_t)(irq))

#define APB1_HZ (BOARD_CPU_HZ / 4u)
#define APB1_TIMER_HZ (BOARD_CPU_HZ / 2u)
#define APB2_TIMER_HZ BOARD_CPU_HZ

static const uint8_t enc_timer[BPD_ENC_N] = BPD_ENC_TIMER;
static const uint8_t enc_a_port[BPD_ENC_N] = BPD_ENC_A_PORT, enc_a_pin[BPD_ENC_N] = BPD_ENC_A_PIN;
static const uint8_t enc_b_port[BPD_ENC_N] = BPD_ENC_B_PORT, enc_b_pin[BPD_ENC_N] = BPD_ENC_B_PIN;
static const uint8_t enc_invert[BPD_ENC_N] = BPD_ENC_INVERT;
static const float enc_power_on[BPD_ENC_N] = BPD_ENC_POWER_ON_COUNTS; /* e.g. a pendulum hanging: pi */
static const uint8_t stop_port[] = BPD_STOP_PORT, stop_pin[] = BPD_STOP_PIN;

static bpd_encoder_t encoders[BPD_ENC_N];
static bpd_stops_t stops;
static volatile uint8_t tick_due;
static uint16_t pwm_top;

static uint32_t timer_base(uint8_t n)
{
    switch (n) {
    case 1: return 0x40010000u;
    case 2: return 0x40000000u;
    case 3: return 0x40000400u;
    case 4: return 0x40000800u;
    default: return 0x40000C00u; /* 5: the rig YAML allows no other */
    }
}

static void timer_clock_on(uint8_t n)
{
    if (n == 1u) RCC_APB2ENR |= 1u;                 /* TIM1EN */
    else RCC_APB1ENR |= 1u << (uint32_t)(n - 2u);    /* TIM2EN bit 0 .. TIM5EN bit 3 */
}

/* Alternate function of a timer's channel pins: AF1 for TIM1/TIM2, AF2 for TIM3-TIM5. */
static uint32_t timer_af(uint8_t n) { return n <= 2u ? 1u : 2u; }

static void pin_mode(uint8_t port, uint8_t pin, uint32_t mode, uint32_t pull)
{
    uint32_t sh = 2u * pin;
    GPIO_MODER(port) = (GPIO_MODER(port) & ~(3u << sh)) | (mode << sh);
    GPIO_PUPDR(port) = (GPIO_PUPDR(port) & ~(3u << sh)) | (pull << sh);
}

/* A pin to its alternate function with a pull: up (1) on inputs, so an open encoder or serial line
 * stays still; down (2) on the PWM output, so it reads 0 % whenever the timer does not drive it. */
static void pin_af(uint8_t port, uint8_t pin, uint32_t af, uint32_t pull)
{
    uint32_t sh = 4u * (pin % 8u);
    GPIO_AFR(port, pin) = (GPIO_AFR(port, pin) & ~(0xFu << sh)) | (af << sh);
    pin_mode(port, pin, 2u, pull);
}

static void pin_write(uint8_t port, uint8_t pin, uint8_t high)
{
    GPIO_BSRR(port) = high ? 1u << pin : 1u << (pin + 16u);
}

static void irq_enable(uint32_t irq, uint8_t priority)
{
    NVIC_IPR(irq) = priority;
    NVIC_ISER(irq / 32u) = 1u << (irq % 32u);
}

static void clock_tree(void)
{
    /* HSI 16 MHz / M 16 * N 336 / P 2 = 168 MHz; Q 7 (48 MHz), R 2. AHB /1, APB1 /4, APB2 /2. */
    FLASH_ACR = 5u | (1u << 8) | (1u << 9) | (1u << 10); /* 5 wait states, prefetch, I and D cache */
    RCC_PLLCFGR = 16u | (336u << 6) | (0u << 16) | (7u << 24) | (2u << 28);
    RCC_CR |= 1u << 24;
    while (!(RCC_CR & (1u << 25))) {
    }
    RCC_CFGR = (5u << 10) | (4u << 13) | 2u;
    while ((RCC_CFGR & (3u << 2)) != (2u << 2)) {
    }
}

/* The motor output: zero duty first, direction low, then the PWM. */
static void motor_init(void)
{
    uint32_t b = timer_base(BPD_MOTOR_TIMER);
    uint32_t clk = BPD_MOTOR_TIMER == 1u ? APB2_TIMER_HZ : APB1_TIMER_HZ;
    uint32_t ch = BPD_MOTOR_CHANNEL, sh = 8u * ((ch - 1u) % 2u);
    timer_clock_on(BPD_MOTOR_TIMER);
    pin_write(BPD_MOTOR_DIR_PORT, BPD_MOTOR_DIR_PIN, 0u); /* low before it becomes an output */
    pin_mode(BPD_MOTOR_DIR_PORT, BPD_MOTOR_DIR_PIN, 1u, 0u);
    pwm_top = (uint16_t)(clk / BPD_MOTOR_PWM_HZ - 1u > 0xFFFFu ? 0xFFFFu : clk / BPD_MOTOR_PWM_HZ - 1u);
    TIM_PSC(b) = 0u;
    TIM_ARR(b) = pwm_top;
    TIM_CCR(b, ch) = 0u;
    /* output compare mode 110 (PWM mode 1) with preload, on CCMR1 (channels 1, 2) or CCMR2 (3, 4) */
    if (ch <= 2u) TIM_CCMR1(b) = (TIM_CCMR1(b) & ~(0xFFu << sh)) | (((6u << 4) | (1u << 3)) << sh);
    else TIM_CCMR2(b) = (TIM_CCMR2(b) & ~(0xFFu << sh)) | (((6u << 4) | (1u << 3)) << sh);
    TIM_CCER(b) |= 1u << (4u * (ch - 1u));
    if (BPD_MOTOR_TIMER == 1u) TIM_BDTR(b) |= 1u << 15; /* MOE: an advanced timer's outputs on */
    TIM_EGR(b) = 1u;                                    /* load the registers */
    TIM_CR1(b) = (1u << 7) | 1u;                        /* auto-reload preload, counter on */
    pin_af(BPD_MOTOR_PWM_PORT, BPD_MOTOR_PWM_PIN, timer_af(BPD_MOTOR_TIMER), 2u);
}

/* Zero duty now: the compare register is preloaded (its write waits for the period's end), so an update
 * event loads it at once; the read back of the timer and the barrier make the write land before any GPIO
 * write after it (another bus), so the direction pin then changes with the bridge off. */
static uint8_t motor_reverse;

static void motor_zero(void)
{
    uint32_t b = timer_base(BPD_MOTOR_TIMER);
    TIM_CCR(b, BPD_MOTOR_CHANNEL) = 0u;
    TIM_EGR(b) = 1u;
    (void)TIM_CCR(b, BPD_MOTOR_CHANNEL);
    __asm volatile("dsb" ::: "memory");
}

/* A fault: the PWM pin an input with its pull-down, as a reset leaves it (the H-bridge's pull-down then holds
 * 0 %), and the duty zeroed, whatever state the fault left the core in; the IWDG restarts the processor. */
void board_fault_stop(void);
void board_fault_stop(void)
{
    uint32_t b = timer_base(BPD_MOTOR_TIMER);
    pin_mode(BPD_MOTOR_PWM_PORT, BPD_MOTOR_PWM_PIN, 0u, 2u);
    TIM_CCR(b, BPD_MOTOR_CHANNEL) = 0u;
    TIM_EGR(b) = 1u;
}

static void encoders_init(void)
{
    uint8_t i;
    for (i = 0; i < BPD_ENC_N; ++i) {
        uint32_t b = timer_base(enc_timer[i]);
        timer_clock_on(enc_timer[i]);
        pin_af(enc_a_port[i], enc_a_pin[i], timer_af(enc_timer[i]), 1u);
        pin_af(enc_b_port[i], enc_b_pin[i], timer_af(enc_timer[i]), 1u);
        TIM_ARR(b) = 0xFFFFu;                                         /* 16 bits, also on the 32-bit TIM2/TIM5 */
        TIM_CCMR1(b) = 1u | (3u << 4) | (1u << 8) | (3u << 12);      /* TI1, TI2 inputs, filter 8 samples */
        TIM_SMCR(b) = 3u;                                             /* encoder mode 3: both edges of both */
        TIM_CR1(b) = 1u;
        bpd_encoder_init(&encoders[i], (uint16_t)TIM_CNT(b));
    }
}

/* The stop inputs active now, one bit each. */
static uint8_t stops_active(void)
{
    uint8_t i, active = 0;
    for (i = 0; i < BPD_STOP_N; ++i) {
        uint8_t level = (uint8_t)((GPIO_IDR(stop_port[i]) >> stop_pin[i]) & 1u);
        if (level != (uint8_t)BPD_STOP_ACTIVE_LOW) active = (uint8_t)(active | (1u << i));
    }
    return active;
}

static void stops_init(void)
{
    uint8_t i;
    bpd_stops_init(&stops);
    RCC_APB2ENR |= 1u << 14; /* SYSCFG */
    for (i = 0; i < BPD_STOP_N; ++i) {
        uint8_t line = stop_pin[i];
        uint32_t sh = 4u * (line % 4u);
        pin_mode(stop_port[i], line, 0u, BPD_STOP_ACTIVE_LOW ? 1u : 2u); /* input, pull-up (or down) */
        SYSCFG_EXTICR(line / 4u) = (SYSCFG_EXTICR(line / 4u) & ~(0xFu << sh)) | ((uint32_t)stop_port[i] << sh);
        EXTI_RTSR |= 1u << line;
        EXTI_FTSR |= 1u << line;
        EXTI_IMR |= 1u << line;
        /* EXTI0..4 have their own interrupts (6..10), 5..9 share 23, 10..15 share 40 */
        irq_enable(line <= 4u ? 6u + line : line <= 9u ? 23u : 40u, 0x00u); /* above everything else */
    }
    bpd_stops_update(&stops, stops_active()); /* a stop pressed at power-on blocks from the start */
    (void)bpd_stops_take(&stops);             /* ... its press ends no run: none is running */
}

static void tick_timer_init(void)
{
    RCC_APB1ENR |= 1u << 5; /* TIM7 */
    TIM_PSC(TIM7_BASE) = APB1_TIMER_HZ / 1000000u - 1u; /* 1 MHz */
    TIM_ARR(TIM7_BASE) = BPD_RIG_PERIOD_US - 1u;
    TIM_EGR(TIM7_BASE) = 1u;
    TIM_SR(TIM7_BASE) = 0u;
    TIM_DIER(TIM7_BASE) = 1u; /* update interrupt */
    TIM_CR1(TIM7_BASE) = 1u;
    irq_enable(TIM7_IRQ, 0x40u);
}

static void usart_init(void)
{
    RCC_APB1ENR |= 1u << 17; /* USART2 */
    pin_af(0u, 2u, 7u, 1u); /* PA2 TX, PA3 RX: AF7 */
    pin_af(0u, 3u, 7u, 1u);
    USART_BRR = (APB1_HZ + BPD_RIG_BAUD / 2u) / BPD_RIG_BAUD; /* oversampling by 16 */
    USART_CR1 = (1u << 13) | (1u << 5) | (1u << 3) | (1u << 2); /* UE, RXNEIE, TE, RE */
    irq_enable(USART2_IRQ, 0x80u);
}

static void iwdg_init(void)
{
    IWDG_KR = 0x5555u; /* unlock */
    IWDG_PR = 0u;      /* LSI 32 kHz / 4 = 8 kHz */
    IWDG_RLR = 400u;   /* 50 ms */
    IWDG_KR = 0xCCCCu; /* start; it cannot be stopped */
}

void board_init(void)
{
    clock_tree();
    RCC_AHB1ENR |= 1u | (1u << 1) | (1u << 2) | (1u << 7); /* GPIOA, B, C, H */
    motor_init();
    encoders_init();
    stops_init();
    usart_init();
    tick_timer_init();
    iwdg_init();
}

void board_irq(unsigned n);
void board_irq(unsigned n)
{
    if (n == USART2_IRQ) {
        while (USART_SR & (1u << 5)) board_uart_rx_byte((uint8_t)USART_DR);
    } else if (n == TIM7_IRQ) {
        TIM_SR(TIM7_BASE) = 0u;
        tick_due = 1;
    } else { /* an end stop or the emergency stop changed: a stop that closed zeroes the motor now */
        EXTI_PR = EXTI_PR; /* written 1 clears */
        if (bpd_stops_update(&stops, stops_active())) motor_zero();
    }
}

void board_uart_write(const uint8_t *data, size_t len)
{
    size_t i;
    for (i = 0; i < len; ++i) {
        while (!(USART_SR & (1u << 7))) {
        }
        USART_DR = data[i];
    }
}

void board_read_sensors(float *raw, uint8_t n)
{
    uint8_t i;
    for (i = 0; i < n; ++i) {
        if (i < BPD_ENC_N) {
            bpd_encoder_update(&encoders[i], (uint16_t)TIM_CNT(timer_base(enc_timer[i])));
            raw[i] = bpd_encoder_counts(&encoders[i], enc_invert[i]) + enc_power_on[i];
        } else {
            raw[i] = 0.0f;
        }
    }
}

void board_write_actuator(const float *u, uint8_t n)
{
    bpd_pwm_t p;
    uint8_t reverse;
    uint32_t primask;
    /* the stops read and the duty written with the stop interrupt held off: a stop closing in between would
     * otherwise have its zero overwritten by the duty read before it (the interrupt state as it was after) */
    __asm volatile("mrs %0, primask\n\tcpsid i" : "=r"(primask) :: "memory");
    p = bpd_pwm_from_command(n ? u[0] : 0.0f, BPD_RIG_ACTION_LIMIT, BPD_MOTOR_FULL_SCALE, pwm_top,
                             (uint8_t)BPD_MOTOR_INVERT,
                             bpd_stops_blocked(&stops, BPD_STOP_BLOCKS_POSITIVE, BPD_STOP_BLOCKS_NEGATIVE));
    reverse = p.duty == 0u ? 0u : p.reverse;
    if (p.duty == 0u || reverse != motor_reverse) { /* zero before the direction changes, the old duty never
                                                    * driven the other way for the rest of its period */
        motor_zero();
        motor_reverse = reverse;
        pin_write(BPD_MOTOR_DIR_PORT, BPD_MOTOR_DIR_PIN, reverse);
    }
    if (p.duty != 0u) TIM_CCR(timer_base(BPD_MOTOR_TIMER), BPD_MOTOR_CHANNEL) = p.duty;
    __asm volatile("msr primask, %0" :: "r"(primask) : "memory");
}

/* Every main-loop pass: the IWDG reloaded (the loop is alive). The tick: the stops polled first (an edge the
 * interrupt missed still stops within this tick), a stop event or a held emergency stop handed to the core (it
 * ends a run: an end stop as a limit stop, the emergency stop, the input in both masks, with its own flag), then
 * the core's tick. */
int board_tick_due(bpd_fw_t *fw)
{
    uint8_t ending, estop = (uint8_t)(BPD_STOP_BLOCKS_POSITIVE & BPD_STOP_BLOCKS_NEGATIVE);
    IWDG_KR = 0xAAAAu;
    if (!tick_due) return 0;
    tick_due = 0;
    __asm volatile("cpsid i" ::: "memory"); /* the stop interrupt updates the same record */
    if (bpd_stops_update(&stops, stops_active())) motor_zero();
    ending = bpd_stops_ending(&stops, BPD_STOP_BLOCKS_POSITIVE, BPD_STOP_BLOCKS_NEGATIVE);
    __asm volatile("cpsie i" ::: "memory");
    if (ending && fw->state == BPD_RUNNING)
        bpd_fw_external_stop(fw, (uint8_t)(((ending & estop) ? BPD_STOP_EMERGENCY : 0u) |
                                           ((ending & (uint8_t)~estop) ? BPD_STOP_END : 0u)));
    return 1;
}

/* TIM7's tick waiting for board_tick_due, not taken: the main loop looks, interrupts masked, before it sleeps. */
int board_tick_pending(void) { return tick_due; }

void board_idle(void) { __asm volatile("wfi"); }
