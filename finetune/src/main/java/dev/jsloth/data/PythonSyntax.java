package dev.jsloth.data;

import com.hubspot.jinjava.el.ExtendedSyntaxBuilder;
import com.hubspot.jinjava.el.ext.ExtendedParser;
import com.hubspot.jinjava.el.ext.StringConcatOperator;
import jinjava.de.odysseus.el.tree.impl.Parser;

/**
 * Jinjava's expression syntax with Jinja2's {@code ~} ({@link PythonConcat}) in place of its own. Public, with
 * Jinjava's constructors: the expression factory makes it by name ({@link JinjaSandbox}).
 */
public final class PythonSyntax extends ExtendedSyntaxBuilder {
    public PythonSyntax() {
    }

    public PythonSyntax(Feature... features) {
        super(features);
    }

    @Override
    protected Parser createParser(String expression) {
        return new ExtendedParser(this, expression) {
            {
                putExtensionHandler(StringConcatOperator.TOKEN, PythonConcat.HANDLER);
            }
        };
    }
}
