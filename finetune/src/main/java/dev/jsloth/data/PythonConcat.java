package dev.jsloth.data;

import com.hubspot.jinjava.el.ext.StringConcatOperator;
import jinjava.de.odysseus.el.misc.TypeConverter;
import jinjava.de.odysseus.el.tree.impl.Parser;
import jinjava.de.odysseus.el.tree.impl.ast.AstBinary;
import jinjava.de.odysseus.el.tree.impl.ast.AstNode;

/**
 * Jinja2's {@code ~}: both sides as Python's {@code str()} ({@link PyRepr#text}), so {@code true ~ '|'} is
 * {@code True|} and {@code 'x' ~ [1, none]} is {@code x[1, None]}, where Jinjava's own operator wrote Java's forms
 * ({@code true|}, {@code x[1, null]}); a null (an undefined name) is the empty string. Jinjava's length limit on the result
 * ({@code maxStringLength}) holds as for its own operator.
 */
final class PythonConcat extends StringConcatOperator {
    static final PythonConcat OP = new PythonConcat();
    /** Builds {@code a ~ b} with this operator; {@link PythonSyntax} puts it in the parser in place of Jinjava's. */
    static final Parser.ExtensionHandler HANDLER = new Parser.ExtensionHandler(Parser.ExtensionPoint.ADD) {
        @Override
        public AstNode createAstNode(AstNode... children) {
            return new AstBinary(children[0], children[1], OP);
        }
    };

    private PythonConcat() {
    }

    @Override
    protected Object apply(TypeConverter converter, Object left, Object right) {
        return getStringBuilder().append(PyRepr.text(left)).append(PyRepr.text(right)).toString();
    }
}
