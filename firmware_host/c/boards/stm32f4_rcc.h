/*
 * Registers the STM32F4 board ports share: the reset and clock control block and the flash access
 * control register, at the same addresses on the F405/407 (RM0090 sections 7.3, 3.9) and the F446
 * (RM0390 sections 6.3, 3.8).
 */
#ifndef STM32F4_RCC_H
#define STM32F4_RCC_H

#include <stdint.h>

#define REG(addr) (*(volatile uint32_t *)(addr))

#define RCC_BASE 0x40023800u
#define RCC_CR REG(RCC_BASE + 0x00u)
#define RCC_PLLCFGR REG(RCC_BASE + 0x04u)
#define RCC_CFGR REG(RCC_BASE + 0x08u)
#define RCC_AHB1ENR REG(RCC_BASE + 0x30u)
#define RCC_APB1ENR REG(RCC_BASE + 0x40u)
#define RCC_APB2ENR REG(RCC_BASE + 0x44u)
#define RCC_CSR REG(RCC_BASE + 0x74u)
#define FLASH_ACR REG(0x40023C00u)

#endif
