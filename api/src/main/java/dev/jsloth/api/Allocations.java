package dev.jsloth.api;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;

/**
 * What a method has allocated and not yet handed to its caller: if the method fails part way (a kernel that rejects
 * its input, a {@link DeviceOutOfMemoryException}), closing this frees all of it, newest first, so a caller that
 * catches the failure (and, say, retries with a smaller batch) finds nothing of the failed call left alive.
 * <pre>{@code
 * try (Allocations made = new Allocations()) {
 *     Tensor h = made.add(be.allocateForOverwrite(dt, shape));
 *     ...                                   // anything here may throw
 *     return made.handOver(new Result(h, ...));
 * }
 * }</pre>
 * After {@link #handOver} closing frees nothing. Not thread-safe: one method's bookkeeping.
 */
public final class Allocations implements AutoCloseable {
    private final List<AutoCloseable> held = new ArrayList<>();
    private boolean handedOver;

    /** Holds {@code t} (null: nothing) until {@link #handOver}; returns it. */
    public <T extends AutoCloseable> T add(T t) {
        if (t != null) held.add(t);
        return t;
    }

    /** Holds each of {@code ts} (null entries skipped). */
    public void addAll(Collection<? extends AutoCloseable> ts) {
        for (AutoCloseable t : ts) add(t);
    }

    /** Ownership of everything held passes to the caller, with {@code result}; returns it. */
    public <R> R handOver(R result) {
        handedOver = true;
        held.clear();
        return result;
    }

    /**
     * Frees what is held (unless handed over), newest first. Every item is closed even if one fails; the first failure
     * is rethrown with the others suppressed.
     */
    @Override
    public void close() {
        if (handedOver) return;
        List<AutoCloseable> newestFirst = new ArrayList<>(held);
        java.util.Collections.reverse(newestFirst);
        held.clear();
        closeInOrder(newestFirst);
    }

    /**
     * Closes every item in the order given (null entries skipped), each even if one before it fails; the first failure
     * is rethrown (a checked one wrapped in {@link IllegalStateException}) with the others suppressed.
     */
    public static void closeInOrder(Iterable<? extends AutoCloseable> items) {
        RuntimeException first = null;
        for (AutoCloseable c : items) {
            if (c == null) continue;
            try {
                c.close();
            } catch (Exception e) {
                RuntimeException r = e instanceof RuntimeException re ? re : new IllegalStateException(e);
                if (first == null) first = r;
                else first.addSuppressed(r);
            }
        }
        if (first != null) throw first;
    }

    /** {@link #closeInOrder(Iterable)} of the items given. */
    public static void closeInOrder(AutoCloseable... items) {
        closeInOrder(java.util.Arrays.asList(items));
    }
}
