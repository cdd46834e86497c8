package dev.jsloth.train;

import dev.jsloth.api.AdamWStep;
import dev.jsloth.api.Backend;
import dev.jsloth.api.Tensor;
import dev.jsloth.api.autograd.Parameter;
import dev.jsloth.api.autograd.ParameterBuffer;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** AdamW over a list of parameters: first and second moments per parameter, a shared step count. */
public final class AdamW implements AutoCloseable {
    private final List<Parameter> params;
    private final Map<String, Tensor[]> moments = new LinkedHashMap<>();
    private final double beta1, beta2, eps, weightDecay;
    private long step;

    private final ParameterBuffer buffer;   // the parameters' shared storage, when they have one
    private final Tensor flatM, flatV;      // with a buffer: both moments end to end; the map holds views

    public AdamW(List<Parameter> params, double beta1, double beta2, double eps, double weightDecay) {
        this(params, null, beta1, beta2, eps, weightDecay);
    }

    /** AdamW over the parameters of one buffer: one kernel launch per step for all of them (PyTorch's "foreach"). */
    public AdamW(ParameterBuffer buffer, double beta1, double beta2, double eps, double weightDecay) {
        this(buffer.parameters(), buffer, beta1, beta2, eps, weightDecay);
    }

    private AdamW(List<Parameter> params, ParameterBuffer buffer, double beta1, double beta2, double eps, double weightDecay) {
        this.params = List.copyOf(params);
        this.buffer = buffer;
        this.beta1 = beta1;
        this.beta2 = beta2;
        this.eps = eps;
        this.weightDecay = weightDecay;
        if (buffer != null) {
            Backend be = buffer.values().backend();
            flatM = be.allocate(buffer.values().dtype(), buffer.values().shape());
            flatV = be.allocate(buffer.values().dtype(), buffer.values().shape());
            int at = 0;
            for (Parameter p : params) {
                int n = Math.toIntExact(p.value().numel());
                moments.put(p.name(), new Tensor[]{flatM.rows(at, n).view(p.value().shape()), flatV.rows(at, n).view(p.value().shape())});
                at += n;
            }
        } else {
            flatM = flatV = null;
            for (Parameter p : params) {
                Backend be = p.value().backend();
                moments.put(p.name(), new Tensor[]{be.allocate(p.value().dtype(), p.value().shape()), be.allocate(p.value().dtype(), p.value().shape())});
            }
        }
    }

    /** One update with learning rate {@code lr} using the parameters' accumulated gradients. */
    public void step(double lr) {
        step++;
        AdamWStep s = new AdamWStep(lr, beta1, beta2, eps, weightDecay, step);
        if (buffer != null) { // elementwise, so one launch over the buffer equals one per parameter, bit for bit
            buffer.values().backend().kernels().adamw(buffer.values(), buffer.grads(), flatM, flatV, s);
            return;
        }
        for (Parameter p : params) {
            Tensor[] m = moments.get(p.name());
            p.value().backend().kernels().adamw(p.value(), p.grad(), m[0], m[1], s);
        }
    }

    public long stepCount() {
        return step;
    }

    /** The moment tensors by parameter name: {exp_avg, exp_avg_sq}. */
    public Map<String, Tensor[]> moments() {
        return moments;
    }

    /** Restores the step count (moments are written into {@link #moments()} by the caller). */
    public void restoreStep(long s) {
        this.step = s;
    }

    public List<Parameter> parameters() {
        return new ArrayList<>(params);
    }

    @Override
    public void close() {
        if (buffer != null) {
            flatM.close();
            flatV.close();
            return;
        }
        for (Tensor[] m : moments.values()) {
            m[0].close();
            m[1].close();
        }
    }
}
