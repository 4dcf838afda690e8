"""The Cortex-M main loop (boards/board_cortexm.c) in the Nucleo-64 image, run in unicorn: a host that sends HELLOs
back to back at the line's rate (each answered by an INFO several times its length) must not hold the loop away
from the control tick, nor from reloading the board's watchdog (IWDG), which would restart the processor.

The model: one instruction a cycle at the image's own clock (its INFO's cycle_hz); the host link moves one byte
each way per byte time of the rig's baud rate (a write to the data register waits for the last to go out, as on
the part); the interrupts (a received byte, SysTick, TIM7's tick) run between two instructions of the main code,
never while it masks them; WFI is a no-op (the loop spins where the part would sleep until the next interrupt), but
where a test steps the image one instruction at a time (step_to) WFI sleeps as on the part: until the next
interrupt, at once if one is pending (masked), and an interrupt taken just before it leaves it to sleep. The stop
inputs are their GPIO ports' input registers (all high: released, the rig's stops being active low)."""

import shutil
import struct
from pathlib import Path

import pytest

from firmware_host.rig import load_rig
from firmware_host.wire.codec import Parser, encode
from firmware_host.wire.spec import FLAGS, PROTOCOL_VERSION
from tests.conftest import pendulum_export

# a rig wired to the Nucleo: desktop-cartpole with a watchdog of its own no test outlasts (a CONFIG lengthens none)
RIG = load_rig(Path(__file__).parent / "fixtures" / "rigs" / "desktop-cartpole-long-watchdog.yaml")
USART2_IRQ, TIM7_IRQ, EXTI15_10_IRQ = 38, 55, 40
GPIOC_IDR, TIM1_CCR1 = 0x40020810, 0x40010034  # the emergency stop's input (PC13) and the motor's duty
RET = 0x2001FF00  # where an interrupt's call returns to: a nop in RAM above the image's


class Nucleo:
    """The image under unicorn with the registers it polls modelled: RCC (the clock comes up at once), USART2 (the
    host link at the rig's baud) and the IWDG's key register (each reload recorded, in cycles)."""

    def __init__(self, tmp) -> None:
        import unicorn
        from elftools.elf.elffile import ELFFile
        from unicorn import arm_const as A

        from firmware_host.measure.build import build_firmware_image
        from firmware_host.measure.elf import symbol_table

        img = build_firmware_image(pendulum_export(), "cortex-m4f", tmp, rig=str(RIG.path), board="nucleo-f446")
        with open(img.elf, "rb") as f:
            e = ELFFile(f)
            segments = [(s["p_paddr"], s.data()) for s in e.iter_segments()
                        if s["p_type"] == "PT_LOAD" and s["p_filesz"]]
            self.syms = {s.name: (s["st_value"] & ~1, s["st_size"]) for s in symbol_table(e, img.elf).iter_symbols()}
            vectors = e.get_section_by_name(".isr_vector").data()
        self.A = A
        uc = self.uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
        uc.ctl_set_cpu_model(A.UC_CPU_ARM_CORTEX_M4)
        for base, end in ((0x08000000, 0x08080000), (0x20000000, 0x20020000), (0xE0000000, 0xE0100000),
                          (0x40000000, 0x40004000), (0x40005000, 0x40023000), (0x40024000, 0x40100000)):
            uc.mem_map(base, end - base)
        for addr, data in segments:
            uc.mem_write(addr, data)
        uc.mem_write(RET, b"\x00\xbf\x00\xbf")
        idle, size = self.syms["board_idle"]
        code = bytes(uc.mem_read(idle, size))
        self.wfi = idle + next(i for i in range(0, size, 2) if code[i:i + 2] == b"\x30\xbf")
        uc.mem_write(self.wfi, b"\x00\xbf")  # WFI -> NOP
        for port in range(8):  # the stop inputs idle high (active low, pulled up)
            uc.mem_write(0x40020000 + 0x400 * port + 0x10, struct.pack("<I", 0xFFFF))
        self.rcc: dict[int, int] = {}
        uc.mmio_map(0x40023000, 0x1000, self._rcc_read, None, self._rcc_write, None)
        self.tx_ready, self.rx, self.tx, self.usart = True, None, bytearray(), {}
        uc.mmio_map(0x40004000, 0x1000, self._usart_read, None, self._usart_write, None)
        self.now, self.reloads = 0, []
        uc.hook_add(unicorn.UC_HOOK_MEM_WRITE, self._iwdg, begin=0x40003000, end=0x40003003)
        self.regs = [getattr(A, f"UC_ARM_REG_R{i}") for i in range(13)] + [A.UC_ARM_REG_SP, A.UC_ARM_REG_LR,
                                                                           A.UC_ARM_REG_XPSR, A.UC_ARM_REG_FPSCR] + \
            [getattr(A, f"UC_ARM_REG_S{i}") for i in range(32)]
        uc.reg_write(A.UC_ARM_REG_SP, struct.unpack("<I", vectors[0:4])[0])
        self.pc = struct.unpack("<I", vectors[4:8])[0] & ~1
        self.host, self.parser, self.frames = bytearray(), Parser(), []
        self.byte = self.period = self.ms = 0
        self.next_tick = self.next_ms = 0

    def _rcc_read(self, uc, off, size, _):
        v = self.rcc.get(off, 0)
        if off == 0x800:
            return v | 1 << 25  # CR: the PLL ready
        return (v & ~0xC) | (v & 3) << 2 if off == 0x808 else v  # CFGR: the clock switched as asked

    def _rcc_write(self, uc, off, size, value, _):
        self.rcc[off] = value

    def _usart_read(self, uc, off, size, _):
        if off == 0x400:  # SR: TXE, RXNE
            return (0x80 if self.tx_ready else 0) | (0x20 if self.rx is not None else 0)
        if off == 0x404:  # DR
            b, self.rx = self.rx or 0, None
            return b
        return self.usart.get(off, 0)

    def _usart_write(self, uc, off, size, value, _):
        if off == 0x404:
            self.tx.append(value & 0xFF)
            self.tx_ready = False  # until this byte has gone out
        else:
            self.usart[off] = value

    def _iwdg(self, uc, access, addr, size, value, _):
        if value == 0xAAAA:
            self.reloads.append(self.now)

    def _step(self, count: int) -> None:
        self.uc.emu_start(self.pc | 1, 0xFFFFFFFF, count=count)
        self.pc = self.uc.reg_read(self.A.UC_ARM_REG_PC)
        self.now += count

    def _interrupt(self, name: str, arg: int = 0) -> None:
        """name(arg) between two instructions of the main code, which the interrupt leaves as it found it."""
        A, uc = self.A, self.uc
        while uc.reg_read(A.UC_ARM_REG_PRIMASK) or uc.reg_read(A.UC_ARM_REG_XPSR) & 0x0600FC00:
            self._step(1)  # masked, or inside an IT block: taken after the next instruction
        saved = [uc.reg_read(r) for r in self.regs]
        uc.reg_write(A.UC_ARM_REG_SP, (saved[13] - 0x100) & ~7)  # below the stack in use, as the exception frame
        uc.reg_write(A.UC_ARM_REG_LR, RET | 1)
        uc.reg_write(A.UC_ARM_REG_R0, arg)
        uc.emu_start(self.syms[name][0] | 1, RET, count=10_000_000)
        assert uc.reg_read(A.UC_ARM_REG_PC) == RET, name
        for r, v in zip(self.regs, saved):
            uc.reg_write(r, v)

    def boot(self) -> dict:
        """Until the INFO that announces the start: its fields; from then on the clock is the image's own."""
        self.byte = 10_000  # cycles, until the clock is known
        while not self.frames:
            self.run(self.byte)
        info = self.frames[0][1]
        hz = info.fields["cycle_hz"]
        self.byte, self.period, self.ms = hz * 10 // RIG.baud, hz // 1_000_000 * RIG.period_us, hz // 1000
        self.next_tick, self.next_ms = self.now + self.period, self.now + self.ms
        return info.fields

    def run(self, cycles: int, flood: bytes = b"") -> None:
        """cycles more, a byte time at a time; with flood, the host keeps sending it back to back."""
        end = self.now + cycles
        while self.now < end:
            self._step(self.byte)
            self.tx_ready = True
            if flood and len(self.host) < len(flood):
                self.host += flood
            if self.host:
                self.rx = self.host.pop(0)
                self._interrupt("board_irq", USART2_IRQ)
            if self.ms and self.now >= self.next_ms:
                self.next_ms += self.ms
                self._interrupt("SysTick_Handler")
            if self.period and self.now >= self.next_tick:
                self.next_tick += self.period
                self._interrupt("board_irq", TIM7_IRQ)
            self.frames += [(self.now, f) for f in self.parser.feed(bytes(self.tx))]
            self.tx.clear()

    def step_to(self, address: int, budget: int) -> None:
        """One instruction at a time until the main code's next is address (or budget cycles have gone), SysTick's
        interrupts on time, the host silent: a WFI not woken by the interrupt just taken sleeps until SysTick's next
        (a masked one pending wakes it at once: _interrupt runs it as a no-op until the mask is lifted)."""
        end, woken = self.now + budget, False
        while self.pc != address and self.now < end:
            if self.pc == self.wfi and not woken:
                self.now = max(self.now, self.next_ms)  # asleep
            if self.now >= self.next_ms:
                self.next_ms += self.ms
                self._interrupt("SysTick_Handler")
                woken = True  # a WFI here was woken by it and is done
            else:
                self._step(1)
                woken = False

    def tick_as_the_loop_sleeps(self) -> int:
        """TIM7's tick interrupt at the worst moment: just after SysTick's, as the main loop's next instruction is its
        WFI (it found the ring empty and no tick due). The cycles from the interrupt to the tick's work (the
        entry of bpd_fw_tick)."""
        self.run(self.next_tick - self.now - self.byte)  # the last tick's STATE long gone, the next not yet due
        self.next_tick = 1 << 62  # TIM7 in this test's hands
        self._interrupt("SysTick_Handler")
        self.next_ms = self.now + self.ms
        self.step_to(self.wfi, self.ms)
        assert self.pc == self.wfi, "the main loop never went to sleep"
        start = self.now
        self._interrupt("board_irq", TIM7_IRQ)
        self.step_to(self.syms["bpd_fw_tick"][0], 2 * self.ms)
        assert self.pc == self.syms["bpd_fw_tick"][0], "no tick"
        return self.now - start


def _configured(board: Nucleo) -> None:
    """CONFIG for a run in host mode whose watchdog (the rig's own) no test outlasts, the angle limit beyond the
    hanging pendulum (pi at power-on)."""
    board.host += encode("config", 1, period_us=0, watchdog_ticks=RIG.watchdog_ticks, mode=0, action_limit=1.0,
                         pos_limit=0.2, angle_limit=10.0)


def _running(tmp_path) -> Nucleo:
    """The board booted, configured (_configured) and started, three periods on."""
    pytest.importorskip("unicorn")
    board = Nucleo(tmp_path)
    board.boot()
    _configured(board)
    board.host += encode("start", 2)
    board.run(3 * board.period)
    return board


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
def test_a_flood_of_hellos_leaves_the_tick_on_time_and_the_watchdog_fed(tmp_path):
    """A run in host mode, then HELLOs back to back for longer than the IWDG's 50 ms: the device answers what it
    can, every tick still comes one period after the last (late by at most one INFO on the wire: the pass that
    answers one HELLO before it looks at the tick) and the IWDG is reloaded within every period."""
    pytest.importorskip("unicorn")
    board = Nucleo(tmp_path)
    info = board.boot()
    _configured(board)
    board.host += encode("start", 2)
    board.run(3 * board.period)
    assert [f.name for _, f in board.frames[1:4]] == ["ack", "ack", "state"]
    start, periods = board.now, 50_000 // RIG.period_us + 2  # longer than the IWDG's 50 ms (iwdg_init)
    board.run(periods * board.period, flood=encode("hello", 3, protocol=PROTOCOL_VERSION))
    flood = [(t, f) for t, f in board.frames if t > start]
    ticks = [t for t, f in flood if f.name == "state"]
    one_info = len(encode("info", 0, **info)) * board.byte
    assert any(f.name == "info" for _, f in flood)
    assert len(ticks) >= periods - 1, f"{len(ticks)} ticks in {periods} periods"
    late = max(abs(b - a - board.period) for a, b in zip(ticks, ticks[1:]))
    assert late <= one_info, f"a tick {late / board.ms:.2f} ms off its period"
    reloads = [start] + [t for t in board.reloads if t > start] + [board.now]
    assert max(b - a for a, b in zip(reloads, reloads[1:])) < board.period


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
def test_a_tick_coming_as_the_loop_goes_to_sleep_starts_at_once(tmp_path):
    """The tick's interrupt after the main loop's last look at the tick but before its WFI: the loop must not sleep
    on it until SysTick's next interrupt (up to 1 ms: a fifth of the rig's period of jitter) but run the tick
    within the pass (the loop looks again with interrupts masked; the pending interrupt wakes the WFI)."""
    board = _running(tmp_path)
    assert [f.name for _, f in board.frames[1:4]] == ["ack", "ack", "state"]
    late = board.tick_as_the_loop_sleeps()
    assert late < board.ms // 100, f"the tick {late / board.ms * 1000:.0f} us after its interrupt"


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
def test_a_held_emergency_stop_ends_a_run_at_its_first_tick_and_its_release_restarts_nothing(tmp_path):
    """ISO 13850: releasing the emergency stop must not by itself restart motion. Its press while idle was dropped
    and, held, it only blocked the commands: a START was accepted and the run went on at zero duty, to drive again
    with the host's next command the moment it was released. Now a START while it is held gives a run that ends at
    its first tick, with the emergency stop's own flag (not an end stop's, limit_stop); released, nothing runs until a
    new START."""
    pytest.importorskip("unicorn")
    board = Nucleo(tmp_path)
    board.boot()
    _configured(board)
    board.run(2 * board.period)
    board.uc.mem_write(GPIOC_IDR, struct.pack("<I", 0xFFFF & ~(1 << 13)))  # pressed (to ground), while idle
    board._interrupt("board_irq", EXTI15_10_IRQ)
    board.run(2 * board.period)
    board.host += encode("start", 2)
    board.run(4 * board.period)
    states = [f for _, f in board.frames if f.name == "state"]
    assert [f.fields["flags"] for f in states] == [FLAGS["estop"]], states  # one STATE, its own flag: the run ended
    board.uc.mem_write(GPIOC_IDR, struct.pack("<I", 0xFFFF))  # released
    board._interrupt("board_irq", EXTI15_10_IRQ)
    board.host += encode("action", 3, echo_seq=states[-1].seq, n_act=1, action=[0.5])  # the host still commanding
    board.run(4 * board.period)
    assert len([f for _, f in board.frames if f.name == "state"]) == 1  # no run: nothing restarted
    assert struct.unpack("<I", bytes(board.uc.mem_read(TIM1_CCR1, 4)))[0] == 0
    board.host += encode("start", 4)  # a new START: the run goes on
    board.run(4 * board.period)
    states = [f for _, f in board.frames if f.name == "state"][1:]
    assert len(states) >= 3 and all(f.fields["flags"] & FLAGS["running"] for f in states), states


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
@pytest.mark.parametrize("pin, irq, flag", [(1, 7, "limit_stop"), (13, EXTI15_10_IRQ, "estop")],
                         ids=["end-stop", "estop"])
def test_a_stop_input_mid_run_ends_it_with_its_own_flag_on_the_board(tmp_path, pin, irq, flag):
    """The board tells the core which input ended the run (board_tick_due: the emergency stop is the input in both
    blocking masks): the right end stop (PC1, EXTI1) mid-run ends it with limit_stop alone, the emergency stop (PC13)
    with its own flag alone, each within the limits, so that a host names the one it was."""
    board = _running(tmp_path)
    assert [f for _, f in board.frames if f.name == "state"][-1].fields["flags"] & FLAGS["running"]
    board.uc.mem_write(GPIOC_IDR, struct.pack("<I", 0xFFFF & ~(1 << pin)))  # pressed (to ground)
    board._interrupt("board_irq", irq)
    board.run(3 * board.period)
    last = [f for _, f in board.frames if f.name == "state"][-1]
    assert (last.fields["flags"], last.fields["action"]) == (FLAGS[flag], [0.0]), last
