package dev.jsloth.cuda;

import dev.jsloth.api.DType;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.distributed.Communicator;
import dev.jsloth.api.distributed.ProcessGroup;
import dev.jsloth.api.distributed.TcpCommunicator;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.util.List;

/**
 * Collectives among one process per GPU through NCCL, on the backend's stream (so they are ordered with the
 * kernels around them). The TCP rendezvous ({@link TcpCommunicator}) carries NCCL's unique id from rank 0 to the
 * others and the host values; tensors go through NCCL only. NVLink SHARP multicast stays off
 * ({@code NCCL_NVLS_ENABLE=0}, set before NCCL initialises unless the environment already says otherwise): it can
 * take a host's GPUs out of service.
 */
final class NcclCommunicator implements Communicator {
    private final CudaBackend be;
    private final Nccl nccl;
    private final TcpCommunicator host;
    private final MemorySegment comm;
    /**
     * Asynchronous reductions on their own stream: they overlap the backward passes queued meanwhile (measured on
     * two H200s: losses identical to the in-order reductions). {@code -Djsloth.nccl.overlap=false} queues them on the
     * compute stream instead, in order.
     */
    static final boolean OVERLAP = !"false".equals(System.getProperty("jsloth.nccl.overlap"));
    private MemorySegment sideStream;
    private boolean closed;

    private NcclCommunicator(CudaBackend be, Nccl nccl, TcpCommunicator host, MemorySegment comm) {
        this.be = be;
        this.nccl = nccl;
        this.host = host;
        this.comm = comm;
    }

    /**
     * With {@link #OVERLAP}: the side stream waits for the gradients (an event on the compute stream), reduces them,
     * and {@link Pending#await} makes the compute stream wait for that in turn. The host never blocks.
     */
    @Override
    public Pending allReduceSumAsync(List<Tensor> tensors) {
        if (!OVERLAP || worldSize() == 1 || tensors.isEmpty()) return Communicator.super.allReduceSumAsync(tensors);
        be.device.bind();
        CudaDriver d = be.device.driver;
        if (sideStream == null) sideStream = d.createStream();
        MemorySegment ready = d.createEvent(), done = d.createEvent();
        d.record(ready, be.device.stream());
        d.waitEvent(sideStream, ready);
        grouped(tensors, c -> nccl.allReduceSum(c.address(), c.numel(), ncclType(c.dtype()), comm, sideStream));
        d.record(done, sideStream);
        return () -> {
            d.waitEvent(be.device.stream(), done);
            d.destroyEvent(ready); // destroying a recorded event is deferred by the driver until it completes
            d.destroyEvent(done);
        };
    }

    static NcclCommunicator connect(CudaBackend be, Nccl nccl, ProcessGroup group) throws IOException {
        keepNvlsOff();
        TcpCommunicator host = TcpCommunicator.connect(group, null, TcpCommunicator.rendezvousTimeout(), "nccl", TcpCommunicator.rendezvousFile());
        try {
            byte[] id = host.broadcastBytes(group.isRoot() ? nccl.uniqueId() : new byte[Nccl.UNIQUE_ID_BYTES]);
            if (id.length != Nccl.UNIQUE_ID_BYTES) throw new IOException("NCCL unique id of " + id.length + " bytes received");
            be.device.bind();
            MemorySegment comm = nccl.initRank(group.worldSize(), id, group.rank());
            return new NcclCommunicator(be, nccl, host, comm);
        } catch (RuntimeException | IOException e) {
            host.close();
            throw e;
        }
    }

    /** setenv("NCCL_NVLS_ENABLE", "0", 0): NCCL reads its environment at initialisation, after the JVM started. */
    private static void keepNvlsOff() {
        if (System.getenv("NCCL_NVLS_ENABLE") != null) return;
        Linker linker = Linker.nativeLinker();
        linker.defaultLookup().find("setenv").ifPresent(f -> {
            MethodHandle setenv = linker.downcallHandle(f, FunctionDescriptor.of(NativeFunctions.INT, NativeFunctions.PTR,
                    NativeFunctions.PTR, NativeFunctions.INT));
            try (Arena a = Arena.ofConfined()) {
                int ignored = (int) setenv.invokeExact(a.allocateFrom("NCCL_NVLS_ENABLE"), a.allocateFrom("0"), 0);
            } catch (Throwable t) {
                throw NativeFunctions.rethrow(t);
            }
        });
    }

    @Override
    public ProcessGroup group() {
        return host.group();
    }

    private static int ncclType(DType t) {
        return switch (t) {
            case F32 -> Nccl.FLOAT32;
            case F64 -> Nccl.FLOAT64;
            case BF16 -> Nccl.BFLOAT16;
            case F16 -> Nccl.FLOAT16;
            case I32 -> Nccl.INT32;
            default -> throw new IllegalArgumentException("NCCL cannot reduce " + t + " tensors");
        };
    }

    @Override
    public void allReduceSum(List<Tensor> tensors) {
        if (worldSize() == 1 || tensors.isEmpty()) return;
        be.device.bind();
        grouped(tensors, c -> nccl.allReduceSum(c.address(), c.numel(), ncclType(c.dtype()), comm, be.device.stream()));
    }

    /** One NCCL call per tensor inside a group: NCCL fuses them into one launch. */
    private void grouped(List<Tensor> tensors, java.util.function.Consumer<CudaTensor> call) {
        nccl.groupStart();
        try {
            for (Tensor t : tensors) call.accept(be.tensor(t));
        } finally {
            nccl.groupEnd();
        }
    }

    @Override
    public double[] allReduceSum(double[] values) {
        return host.allReduceSum(values);
    }

    @Override
    public void broadcast(List<Tensor> tensors, int root) {
        if (worldSize() == 1 || tensors.isEmpty()) return;
        be.device.bind();
        grouped(tensors, c -> nccl.broadcast(c.address(), c.numel(), ncclType(c.dtype()), root, comm, be.device.stream()));
    }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        try {
            be.device.synchronize();
            if (sideStream != null) {
                be.device.driver.synchronize(sideStream);
                be.device.driver.destroyStream(sideStream);
            }
            nccl.destroy(comm);
        } finally {
            host.close();
        }
    }

    /**
     * After a failure: {@code ncclCommAbort} stops the collectives queued on the streams (with a peer gone they would
     * never finish, and {@link #close}'s synchronize would wait for ever), then the sockets close, so the other ranks'
     * host collectives fail at once instead of waiting. The side stream is left to the driver (it goes with the context).
     */
    @Override
    public void abort() {
        if (closed) return;
        closed = true;
        try {
            nccl.abort(comm);
        } finally {
            host.close();
        }
    }
}
