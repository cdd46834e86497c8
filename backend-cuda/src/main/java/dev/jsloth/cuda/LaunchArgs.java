package dev.jsloth.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

/**
 * The arguments of one kernel launch, in the order of the kernel's C++ parameters: device pointers, 64-bit
 * integers ({@code i64}), 32-bit integers ({@code int}), floats and doubles. {@link #pack} builds the {@code void**}
 * array that {@code cuLaunchKernel} takes.
 */
final class LaunchArgs {
    private record Arg(boolean wide, long bits) {
    }

    private final List<Arg> args = new ArrayList<>();

    static LaunchArgs of() {
        return new LaunchArgs();
    }

    /** A device pointer (0 for a null pointer). */
    LaunchArgs ptr(long devicePointer) {
        args.add(new Arg(true, devicePointer));
        return this;
    }

    LaunchArgs i64(long v) {
        args.add(new Arg(true, v));
        return this;
    }

    LaunchArgs i32(int v) {
        args.add(new Arg(false, v));
        return this;
    }

    /** A C++ {@code float}: its 32 bits, like an {@code int}. */
    LaunchArgs f32(float v) {
        args.add(new Arg(false, Float.floatToRawIntBits(v)));
        return this;
    }

    LaunchArgs f64(double v) {
        args.add(new Arg(true, Double.doubleToRawLongBits(v)));
        return this;
    }

    int size() {
        return args.size();
    }

    /** An array of pointers, each to an 8-byte slot holding one argument's value. */
    MemorySegment pack(Arena arena) {
        MemorySegment slots = arena.allocate(8L * Math.max(1, args.size()), 8);
        MemorySegment pointers = arena.allocate(ValueLayout.ADDRESS, Math.max(1, args.size()));
        return fill(slots, pointers);
    }

    /** The most arguments a kernel of this backend takes (the per-thread launch buffer holds that many). */
    static final int MAX_ARGS = 32;

    private record Buffer(MemorySegment slots, MemorySegment pointers) {
    }

    // cuLaunchKernel copies the argument values before it returns, so one buffer per thread serves every launch
    private static final ThreadLocal<Buffer> BUFFERS = ThreadLocal.withInitial(() -> {
        Arena a = Arena.ofAuto();
        return new Buffer(a.allocate(8L * MAX_ARGS, 8), a.allocate(ValueLayout.ADDRESS, MAX_ARGS));
    });

    /** {@link #pack} into this thread's reusable buffer: valid until the thread's next launch. */
    MemorySegment packReused() {
        if (args.size() > MAX_ARGS) throw new IllegalStateException(args.size() + " kernel arguments, at most " + MAX_ARGS);
        Buffer b = BUFFERS.get();
        return fill(b.slots(), b.pointers());
    }

    private MemorySegment fill(MemorySegment slots, MemorySegment pointers) {
        for (int i = 0; i < args.size(); i++) {
            Arg a = args.get(i);
            MemorySegment slot = slots.asSlice(8L * i, 8);
            if (a.wide()) slot.set(ValueLayout.JAVA_LONG, 0, a.bits());
            else slot.set(ValueLayout.JAVA_INT, 0, (int) a.bits());
            pointers.setAtIndex(ValueLayout.ADDRESS, i, slot);
        }
        return pointers;
    }
}
