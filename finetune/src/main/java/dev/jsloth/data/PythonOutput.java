package dev.jsloth.data;

import com.hubspot.jinjava.interpret.Context;
import com.hubspot.jinjava.interpret.JinjavaInterpreter;
import com.hubspot.jinjava.lib.expression.ExpressionStrategy;
import com.hubspot.jinjava.mode.ExecutionMode;
import com.hubspot.jinjava.tree.output.RenderedOutputNode;
import com.hubspot.jinjava.tree.parse.ExpressionToken;

/**
 * Prints each {@code {{ expression }}} as Jinja2 does: Python's {@code str()} of the value ({@link PyRepr#str}), so
 * {@code True}, {@code [1, None]}, {@code {'k': False}}, {@code 1e-05} rather than Jinjava's Java forms. A null prints
 * as nothing: Jinjava resolves an undefined name to null too, and Jinja2 prints an undefined value as the empty string
 * (an explicit {@code none} alone, which Jinja2 prints as {@code None}, cannot be told apart from it here; inside a
 * list or dict it prints as {@code None}). Nested interpretation and autoescaping, the other steps of Jinjava's own
 * strategy, are off in {@link JinjaSandbox}.
 */
final class PythonOutput implements ExpressionStrategy, ExecutionMode {
    static final PythonOutput INSTANCE = new PythonOutput();

    private PythonOutput() {
    }

    @Override
    public RenderedOutputNode interpretOutput(ExpressionToken master, JinjavaInterpreter interpreter) {
        Object value = interpreter.resolveELExpression(master.getExpr(), master.getLineNumber());
        return new RenderedOutputNode(PyRepr.text(value));
    }

    /** The execution mode's one change to Jinjava's default: this class prints expressions. */
    @Override
    public void prepareContext(Context context) {
        context.setExpressionStrategy(this);
    }
}
