package dev.jsloth.api.ops;

import dev.jsloth.api.Allocations;
import dev.jsloth.api.Backend;
import dev.jsloth.api.DType;
import dev.jsloth.api.Kernels;
import dev.jsloth.api.Shape;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.autograd.ParameterBuffer;

import java.util.ArrayList;
import java.util.List;

/**
 * Projections that read the same input X (a Llama layer's Q, K and V; its gate and up), each a {@link LoraLinear}.
 * When their A matrices lie end to end ({@link ParameterBuffer.Stack}: {@code A_all [R, in]}, R the sum of the
 * ranks), one product forms every rank-r product and X is read once for all of them, in the forward and for dA:
 * <pre>
 *   XA_all^T = A_all X^T                     [R, n]   member j's rows: (X A_j^T)^T
 *   Y_j      = X W_j^T + b_j + s_j (XA_j) B_j^T
 * backward, from every dY_j:
 *   G_j      = s_j B_j^T dY_j^T              [r_j, n] member j's rows of G [R, n] (in the rank-r type, Kernels#lowRankType)
 *   dB_j    += s_j dY_j^T (XA_j)
 *   dA_all  += G X                           one product for every member's dA
 *   dX       = sum_j dY_j W_j + G^T A_all    the adapters' terms in one low-rank product
 * </pre>
 * The rank-r products are kept transposed ({@code [r, n]}) so that each member's are rows of the stacked one. Without
 * a stack (a member without an adapter, or A matrices stored apart) each member runs on its own, as {@link LoraLinear}.
 */
public final class SharedInputLora {
    private final List<LoraLinear> members;
    private final ParameterBuffer.Stack stack;
    private final int[] firstRow; // member j's first row in the stack

    /** {@code stack}: the members' A matrices end to end, in member order (null: each member on its own). */
    public SharedInputLora(List<LoraLinear> members, ParameterBuffer.Stack stack) {
        if (members.isEmpty()) throw new IllegalArgumentException("no projections");
        int in = members.getFirst().inFeatures();
        for (LoraLinear m : members)
            if (m.inFeatures() != in) throw new IllegalArgumentException("projections sharing an input must take " + in + " features, not " + m.inFeatures());
        this.members = List.copyOf(members);
        this.firstRow = new int[members.size()];
        if (stack != null) {
            int rows = 0;
            for (int j = 0; j < members.size(); j++) {
                LoraLinear m = members.get(j);
                if (!m.hasAdapter()) throw new IllegalArgumentException("a stacked A needs an adapter on every projection");
                firstRow[j] = rows;
                rows += m.loraA().value().shape().dim(0);
            }
            Shape sh = stack.value().shape();
            if (sh.dim(0) != rows || sh.dim(1) != in)
                throw new IllegalArgumentException("stacked A " + sh + " does not fit the projections' A matrices (" + rows + " rows of " + in + ")");
            for (int j = 0; j < members.size(); j++)
                if (stack.members().size() != members.size() || stack.members().get(j) != members.get(j).loraA())
                    throw new IllegalArgumentException("the stack is not these projections' A matrices, in this order");
        }
        this.stack = stack;
    }

    public List<LoraLinear> members() {
        return members;
    }

    /** Whether the rank-r products are formed stacked (in passes without dropout). */
    public boolean stacked() {
        return stack != null;
    }

    /** Whether dropout pass {@code pass} masks any member's input (each member then on its own). */
    public boolean dropsOut(Dropout.Pass pass) {
        for (LoraLinear m : members) if (m.dropsOut(pass)) return true;
        return false;
    }

    /** Whether each member forms its own rank-r product in pass {@code pass}: unstacked, or masking some member's input. */
    private boolean eachOnItsOwn(Dropout.Pass pass) {
        return stack == null || dropsOut(pass);
    }

    /** The rank-r products of one forward, kept across checkpointing: the stacked one, or each member's. */
    public record Products(Tensor stacked, List<Tensor> each) implements AutoCloseable {
        @Override
        public void close() {
            if (stacked != null) stacked.close();
            if (each != null) for (Tensor t : each) if (t != null) t.close();
        }

        /** Whether there is no product at all (no projection has an adapter). */
        public boolean isEmpty() {
            return stacked == null && (each == null || each.stream().allMatch(java.util.Objects::isNull));
        }
    }

    /**
     * What forward keeps for backward: the input (not owned), the stacked rank-r product {@code [R, n]} and A_all in the
     * rank-r type (stacked; {@link LoraLinear#rankType}), and each member's saved state (stacked: its B in that type only).
     */
    public record Saved(Tensor x, Tensor xaT, Tensor a, boolean aOwned, List<LoraLinear.Saved> each) implements AutoCloseable {
        @Override
        public void close() {
            if (xaT != null) xaT.close();
            if (aOwned) a.close();
            for (LoraLinear.Saved s : each) s.close();
        }

        /** Hands the rank-r products to the result (no copies) and frees the rest (the input is the caller's). */
        public Products takeProducts() {
            if (aOwned) a.close();
            List<Tensor> own = new ArrayList<>();
            for (LoraLinear.Saved s : each) own.add(s.takeXa());
            return xaT != null ? new Products(xaT, null) : new Products(null, own);
        }
    }

    /** The outputs {@code Y_j} and what backward needs. */
    public record Forward(List<Tensor> ys, Saved saved) {
    }

    /** Training forward: every member's output plus the saved state for {@link #backward}. */
    public Forward forwardSaving(Tensor x) {
        return forwardSaving(x, Dropout.Pass.NONE);
    }

    /**
     * {@link #forwardSaving(Tensor)} in a dropout pass ({@link Dropout.Pass#NONE}: none). Where it masks any
     * member's input, each member forms its own rank-r product from its own masked X (as PEFT's separate dropout
     * modules do), so the stacked product is not used in that pass.
     */
    public Forward forwardSaving(Tensor x, Dropout.Pass pass) {
        return forward(x, saveForBackward(x, pass));
    }

    /** Training forward from kept rank-r products (ownership passes to the result): X is not read for them again. */
    public Forward forwardSavingWith(Tensor x, Products kept) {
        return forwardSavingWith(x, kept, Dropout.Pass.NONE);
    }

    /** {@link #forwardSavingWith(Tensor, Products)} for products formed in dropout pass {@code pass}. */
    public Forward forwardSavingWith(Tensor x, Products kept, Dropout.Pass pass) {
        return forward(x, savedWith(x, kept, pass));
    }

    /** What {@link #forwardSaving} saves, without the outputs (a recompute that only needs the rank-r products). */
    public Saved saveForBackward(Tensor x) {
        return saveForBackward(x, Dropout.Pass.NONE);
    }

    /** {@link #saveForBackward(Tensor)} in a dropout pass ({@link Dropout.Pass#NONE}: none). */
    public Saved saveForBackward(Tensor x, Dropout.Pass pass) {
        if (eachOnItsOwn(pass)) {
            try (Allocations made = new Allocations()) { // a failure frees the members saved so far (each with its masked input)
                List<LoraLinear.Saved> each = new ArrayList<>();
                for (LoraLinear m : members) each.add(made.add(m.saveForBackward(x, pass)));
                return made.handOver(new Saved(x, null, null, false, each));
            }
        }
        checkInput(x);
        Backend be = x.backend();
        DType rank = rankType(x.dtype());
        try (Allocations made = new Allocations()) {
            StackedA a = stackedA(rank);
            if (a.owned()) made.add(a.tensor());
            Tensor xaT = made.add(be.allocateForOverwrite(rank, Shape.of(stack.rows(), Math.toIntExact(x.shape().rows()))));
            be.kernels().gemm(false, true, 1.0, a.tensor(), x, 0.0, xaT);                        // A_all X^T
            return made.handOver(new Saved(x, xaT, a.tensor(), a.owned(), memberFactors(x)));
        }
    }

    /** The saved state from kept rank-r products (ownership passes to the result). */
    public Saved savedWith(Tensor x, Products kept) {
        return savedWith(x, kept, Dropout.Pass.NONE);
    }

    /** {@link #savedWith(Tensor, Products)} for products formed in dropout pass {@code pass}. */
    public Saved savedWith(Tensor x, Products kept, Dropout.Pass pass) {
        if (eachOnItsOwn(pass)) {
            if (kept.each() == null || kept.each().size() != members.size())
                throw new IllegalArgumentException("kept rank-r products do not fit " + members.size() + " projections on their own");
            try (Allocations made = new Allocations()) {
                List<LoraLinear.Saved> each = new ArrayList<>();
                for (int j = 0; j < members.size(); j++) each.add(made.add(members.get(j).savedWith(x, kept.each().get(j), pass)));
                return made.handOver(new Saved(x, null, null, false, each));
            }
        }
        if (kept.stacked() == null) throw new IllegalArgumentException("the stacked rank-r product is missing");
        checkInput(x);
        Shape want = Shape.of(stack.rows(), Math.toIntExact(x.shape().rows()));
        if (!kept.stacked().shape().equals(want))
            throw new IllegalArgumentException("kept rank-r product " + kept.stacked().shape() + " does not fit " + want);
        StackedA a = stackedA(rankType(x.dtype()));
        try {
            return new Saved(x, kept.stacked(), a.tensor(), a.owned(), memberFactors(x));
        } catch (RuntimeException | Error e) {
            if (a.owned()) a.tensor().close();
            throw e;
        }
    }

    /** The members' outputs from saved state (ownership of {@code saved} passes to the result; freed if this fails). */
    private Forward forward(Tensor x, Saved saved) {
        try (Allocations made = new Allocations()) {
            made.add(saved);
            List<Tensor> ys = new ArrayList<>();
            if (saved.xaT() == null) {
                for (int j = 0; j < members.size(); j++) ys.add(made.add(members.get(j).forwardWith(x, saved.each().get(j)).y()));
            } else {
                for (int j = 0; j < members.size(); j++)
                    ys.add(made.add(members.get(j).output(x, rowsOf(saved.xaT(), j), true, saved.each().get(j).factors().b(), null)));
            }
            return made.handOver(new Forward(ys, saved));
        }
    }

    /** Backward from every member's {@code dY_j}: returns a new dX and accumulates into the adapters' gradients. */
    public Tensor backward(List<Tensor> dys, Saved saved) {
        return backward(dys, saved, true);
    }

    /** {@link #backward} where dX is not needed: the adapters' gradients only (no dX products). */
    public void backwardParametersOnly(List<Tensor> dys, Saved saved) {
        backward(dys, saved, false);
    }

    private Tensor backward(List<Tensor> dys, Saved saved, boolean inputGradient) {
        if (dys.size() != members.size()) throw new IllegalArgumentException(dys.size() + " output gradients for " + members.size() + " projections");
        if (saved.xaT() == null) {
            if (!inputGradient) {
                for (int j = 0; j < members.size(); j++) members.get(j).backwardParametersOnly(dys.get(j), saved.each().get(j));
                return null;
            }
            try (Allocations made = new Allocations()) {
                Tensor dx = made.add(members.getFirst().backward(dys.getFirst(), saved.each().getFirst()));
                for (int j = 1; j < members.size(); j++) members.get(j).backwardInto(dys.get(j), saved.each().get(j), dx);
                return made.handOver(dx);
            }
        }
        Tensor x = saved.x(), first = dys.getFirst();
        Backend be = first.backend();
        Kernels k = be.kernels();
        int n = Math.toIntExact(x.shape().rows());
        Tensor dx = inputGradient ? be.allocateForOverwrite(first.dtype(), Shape.of(n, x.shape().cols())) : null;
        try (Tensor g = be.allocateForOverwrite(rankType(first.dtype()), Shape.of(stack.rows(), n))) {
            for (int j = 0; j < members.size(); j++) {
                LoraLinear m = members.get(j);
                Tensor dy = dys.get(j), b = saved.each().get(j).factors().b();
                k.gemm(true, true, m.scaling(), b, dy, 0.0, rowsOf(g, j));                       // G_j = s_j B_j^T dY_j^T
                k.gemm(true, true, m.scaling(), dy, rowsOf(saved.xaT(), j), 1.0, m.loraB().grad()); // dB_j += s_j dY_j^T XA_j
            }
            k.gemm(false, false, 1.0, g, x, 1.0, stack.grad());                                   // dA_all += G X
            if (dx == null) return null;
            k.gemmPlusLowRank(false, false, 1.0, first, members.getFirst().weight(), 1.0, g, true, saved.a(), 0.0, dx);
            for (int j = 1; j < members.size(); j++) k.gemm(false, false, 1.0, dys.get(j), members.get(j).weight(), 1.0, dx);
        } catch (RuntimeException | Error e) {
            if (dx != null) dx.close();
            throw e;
        }
        return dx;
    }

    /** Member j's rows of a stacked {@code [R, n]} matrix: its {@code [r_j, n]}. */
    private Tensor rowsOf(Tensor stacked, int j) {
        return stacked.rows(firstRow[j], members.get(j).loraA().value().shape().dim(0));
    }

    /** A_all in some type, and whether the caller owns it (a fresh copy) or not (a view of the buffer or its copy). */
    private record StackedA(Tensor tensor, boolean owned) {
    }

    /** A_all in {@code type}: the stack itself, its compute copy for this pass, or a fresh copy (owned by the caller). */
    private StackedA stackedA(DType type) {
        Tensor v = stack.value();
        if (v.dtype() == type) return new StackedA(v, false);
        Tensor c = stack.computeCopy(type);
        if (c != null) return new StackedA(c, false);
        try (Allocations made = new Allocations()) {
            Tensor copy = made.add(v.backend().allocateForOverwrite(type, v.shape()));
            v.backend().kernels().copy(v, copy);
            return made.handOver(new StackedA(copy, true));
        }
    }

    /** The rank-r path's type for input of type {@code input} (the members share it: one backend, one parameter type). */
    private DType rankType(DType input) {
        return members.getFirst().rankType(input);
    }

    /** Each member's saved state with no rank-r product of its own: its A and B in the rank-r type. */
    private List<LoraLinear.Saved> memberFactors(Tensor x) {
        try (Allocations made = new Allocations()) {
            List<LoraLinear.Saved> each = new ArrayList<>();
            for (LoraLinear m : members) each.add(made.add(new LoraLinear.Saved(x, null, m.factors(m.rankType(x.dtype())))));
            return made.handOver(each);
        }
    }

    private void checkInput(Tensor x) {
        int in = members.getFirst().inFeatures();
        if (x.shape().rank() != 2 || x.shape().cols() != in)
            throw new IllegalArgumentException("input " + x.shape() + " does not fit projections of " + in + " input features");
    }
}
