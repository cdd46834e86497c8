package dev.jsloth.data;

import com.hubspot.jinjava.el.JinjavaNodePreProcessor;
import com.hubspot.jinjava.interpret.InterpretException;
import com.hubspot.jinjava.interpret.JinjavaInterpreter;
import com.hubspot.jinjava.tree.Node;

/**
 * Bounds the work of one template render and records why it must fail.
 *
 * <p>Jinjava calls this before rendering every node (including every node of every loop iteration and macro call).
 * Once a render has rendered {@link #MAX_NODES} nodes, run past {@link #MAX_NANOS}, or called
 * {@code raise_exception}, every further node throws at once, so the render stops quickly; the render's owner then
 * reports the recorded reason. State is per thread, set up by {@link #begin()} and cleared by {@link #end()}.
 */
final class RenderGuard extends JinjavaNodePreProcessor {
    /** Nodes one render may render (a chat template renders a few per message). */
    static final long MAX_NODES = 1_000_000;
    /** Wall-clock time one render may take. */
    static final long MAX_NANOS = 10_000_000_000L;

    private static final ThreadLocal<State> CURRENT = new ThreadLocal<>();

    /** The budget and outcome of the render running on this thread. */
    static final class State {
        private final long deadline = System.nanoTime() + MAX_NANOS;
        private long nodes;
        private String stopped;
        private String raised;

        /** Why the render was cut off, or null. */
        String stopped() {
            return stopped;
        }

        /** The message the template raised with {@code raise_exception}, or null. */
        String raised() {
            return raised;
        }
    }

    static State begin() {
        State s = new State();
        CURRENT.set(s);
        return s;
    }

    static void end() {
        CURRENT.remove();
    }

    /** Records a template's {@code raise_exception(message)} and aborts the render. */
    static void raise(String message) {
        State s = CURRENT.get();
        if (s != null && s.raised == null) s.raised = message;
        throw new IllegalStateException(message);
    }

    @Override
    public void accept(Node node, JinjavaInterpreter interpreter) {
        super.accept(node, interpreter);
        State s = CURRENT.get();
        if (s == null) return;
        if (s.raised != null) throw stop(node, "raise_exception was called");
        if (s.stopped == null) {
            if (++s.nodes > MAX_NODES) s.stopped = "template rendered more than " + MAX_NODES + " nodes (a runaway loop?)";
            else if ((s.nodes & 1023) == 0 && System.nanoTime() - s.deadline > 0)
                s.stopped = "template took longer than " + MAX_NANOS / 1_000_000_000L + " s to render";
        }
        if (s.stopped != null) throw stop(node, s.stopped);
    }

    private static InterpretException stop(Node node, String why) {
        return new InterpretException(why, node.getLineNumber(), node.getStartPosition());
    }
}
