package dev.jsloth.api.distributed;

import dev.jsloth.api.Tensor;

import java.util.List;

/**
 * Collective operations among the processes of a {@link ProcessGroup}: what data-parallel training needs. Every
 * rank must make the same calls in the same order. Obtain one from {@link dev.jsloth.api.Backend#communicator}:
 * CUDA uses NCCL; the generic implementation ({@link TcpCommunicator}) moves host copies over TCP.
 */
public interface Communicator extends AutoCloseable {
    ProcessGroup group();

    default int rank() {
        return group().rank();
    }

    default int worldSize() {
        return group().worldSize();
    }

    /**
     * Replaces each tensor by its sum over the ranks, in place; every rank ends with identical values. The tensors
     * travel as one group (NCCL fuses them; the TCP implementation sends one message).
     */
    void allReduceSum(List<Tensor> tensors);

    /** A collective under way: {@link #await} returns once its results are in place (for the backend's later work). */
    interface Pending {
        void await();
    }

    /**
     * {@link #allReduceSum(List)} started now and finished by {@link Pending#await}, so it can overlap the work queued
     * in between (the tensors must not be touched until then). Every rank must start the same collectives in the same
     * order. The default completes before returning.
     */
    default Pending allReduceSumAsync(List<Tensor> tensors) {
        allReduceSum(tensors);
        return () -> { };
    }

    /** Sums host values over the ranks (element by element, in rank order); every rank gets the sums. */
    double[] allReduceSum(double[] values);

    /** Overwrites each tensor with the root's values. */
    void broadcast(List<Tensor> tensors, int root);

    /** Returns once every rank has called it. */
    default void barrier() {
        allReduceSum(new double[1]);
    }

    /**
     * Tears the communicator down after a failure, without waiting for collectives under way (a peer that died would
     * never complete them): NCCL's {@code ncclCommAbort}, then the sockets. Later calls, {@link #close} included, do
     * nothing. The default is {@link #close}.
     */
    default void abort() {
        close();
    }

    /** Runs {@code work}; if it throws, aborts this communicator before the exception goes on (and before any close). */
    default <T, E extends Exception> T abortOnFailure(Work<T, E> work) throws E {
        try {
            return work.run();
        } catch (Throwable t) {
            try {
                abort();
            } catch (RuntimeException | Error suppressed) {
                t.addSuppressed(suppressed);
            }
            throw t;
        }
    }

    /** Work that returns a value and may throw {@code E}. */
    @FunctionalInterface
    interface Work<T, E extends Exception> {
        T run() throws E;
    }

    @Override
    void close();
}
