/* Minimal Cortex-M start-up: vector table, .data copy, .bss clear, FPU enable, main(). */
#include <stdint.h>

extern uint32_t _estack, _sidata, _sdata, _edata, _sbss, _ebss;
int main(void);
void Reset_Handler(void);
void Default_Handler(void);
void SysTick_Handler(void) __attribute__((weak, alias("Default_Handler")));

void Default_Handler(void)
{
    for (;;) {
    }
}

/* The initial stack pointer, then the 15 system exception handlers. */
struct vector_table {
    uint32_t *initial_sp;
    void (*handlers[15])(void);
};

__attribute__((section(".isr_vector"), used)) static const struct vector_table vectors = {
    &_estack,
    {Reset_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler, 0, 0, 0, 0,
     Default_Handler, Default_Handler, 0, Default_Handler, SysTick_Handler},
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
