/* Minimal Cortex-M start-up: vector table, .data copy, .bss clear, FPU enable, main().
 * A fault, or an exception no handler takes, enters Default_Handler: it calls board_fault_stop() (a board with
 * a motor overrides the weak default to stop it) and stays there until the board's watchdog restarts the core.
 * With BOARD_N_IRQ > 0 the table also holds 96 external interrupt vectors (enough for the STM32F4
 * family's 82); they all enter External_Handler, which passes the interrupt number to the board's
 * board_irq(). */
#include <stdint.h>

extern uint32_t _estack, _sidata, _sdata, _edata, _sbss, _ebss;
int main(void);
void Reset_Handler(void);
void Default_Handler(void);
void SysTick_Handler(void) __attribute__((weak, alias("Default_Handler")));

#ifndef BOARD_N_IRQ
#define BOARD_N_IRQ 0
#endif
#if BOARD_N_IRQ > 0
void board_irq(unsigned n);
void External_Handler(void);
void External_Handler(void)
{
    uint32_t ipsr;
    __asm volatile("mrs %0, ipsr" : "=r"(ipsr));
    board_irq((unsigned)(ipsr & 0x1FFu) - 16u);
}
#endif

/* The motor stopped with registers only (the fault may have come from anywhere): a hard fault masks every
 * interrupt, an end stop's included, and the timer would drive the last duty until the watchdog's reset. */
void board_fault_stop(void);
__attribute__((weak)) void board_fault_stop(void) {}

void Default_Handler(void)
{
    board_fault_stop();
    for (;;) {
    }
}

/* The initial stack pointer, then the 15 system exception handlers. */
struct vector_table {
    uint32_t *initial_sp;
    void (*handlers[15])(void);
#if BOARD_N_IRQ > 0
    void (*irq[96])(void);
#endif
};

#if BOARD_N_IRQ > 96
#error "the vector table holds 96 external interrupts"
#endif
#if BOARD_N_IRQ > 0
#define IRQ4 External_Handler, External_Handler, External_Handler, External_Handler
#define IRQ16 IRQ4, IRQ4, IRQ4, IRQ4
#define IRQ_ALL {IRQ16, IRQ16, IRQ16, IRQ16, IRQ16, IRQ16} 
#endif

__attribute__((section(".isr_vector"), used)) static const struct vector_table vectors = {
    &_estack,
    {Reset_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler, 0, 0, 0, 0,
     Default_Handler, Default_Handler, 0, Default_Handler, SysTick_Handler},
#if BOARD_N_IRQ > 0
    IRQ_ALL,
#endif
};

void Reset_Handler(void)
{
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata) *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss;) *dst++ = 0;
#if defined(__ARM_FP)
    /* CPACR: full access to CP10 and CP11 */
    *(volatile uint32_t *)0xE000ED88u |= (0xFu << 20);
    __asm volatile("dsb\n isb");
#endif
    (void)main();
    for (;;) {
    }
}

/* newlib's libm may set errno */
int *__errno(void);
int *__errno(void)
{
    static int e;
    return &e;
}
