package dev.jsloth.api;

/**
 * Hyper-parameters of one AdamW update (decoupled weight decay, bias correction), as PyTorch's
 * {@code torch.optim.AdamW}: {@code p -= lr*wd*p; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
 * p -= lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps)}. {@code step} is t, counted from 1.
 */
public record AdamWStep(double lr, double beta1, double beta2, double eps, double weightDecay, long step) {
    public AdamWStep {
        if (step < 1) throw new IllegalArgumentException("AdamW step counts from 1, got " + step);
        if (!(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1))
            throw new IllegalArgumentException("AdamW betas must lie in [0,1): " + beta1 + ", " + beta2);
    }
}
