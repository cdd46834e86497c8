package dev.jsloth.data;

import com.hubspot.jinjava.Jinjava;
import com.hubspot.jinjava.JinjavaConfig;
import com.hubspot.jinjava.LegacyOverrides;
import com.hubspot.jinjava.el.JinjavaProcessors;
import com.hubspot.jinjava.el.TruthyTypeConverter;
import com.hubspot.jinjava.el.ext.ExtendedParser;
import com.hubspot.jinjava.el.ext.JinjavaListELResolver;
import com.hubspot.jinjava.el.TypeConvertingMapELResolver;
import com.hubspot.jinjava.interpret.Context;
import com.hubspot.jinjava.interpret.RenderResult;
import com.hubspot.jinjava.interpret.TemplateError;
import com.hubspot.jinjava.loader.ResourceLocator;
import jinjava.de.odysseus.el.ExpressionFactoryImpl;
import jinjava.de.odysseus.el.tree.TreeBuilder;
import jinjava.javax.el.CompositeELResolver;
import jinjava.javax.el.ExpressionFactory;

import java.io.IOException;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.stream.Collectors;

/**
 * A Jinjava engine locked down for rendering untrusted chat templates over plain data.
 *
 * <ul>
 *   <li>No loading: {@code include}, {@code import}, {@code from} and {@code extends} are disabled, and the resource
 *       locator refuses every name.</li>
 *   <li>No Java: the EL resolver is {@link SandboxResolver} plus list/map indexing, so no getter or method of any
 *       Java object is reachable; filters that parse YAML/JSON, re-render strings or dump objects are disabled.</li>
 *   <li>Data is never code: nested interpretation is off, so {@code {{ }}} inside message text stays text.</li>
 *   <li>Bounded: output and strings are capped at {@link #MAX_OUTPUT_CHARS}, lists and dicts at
 *       {@link #MAX_COLLECTION_SIZE}, {@code range()} at {@link #MAX_RANGE}, macro recursion and render depth are
 *       limited, and {@link RenderGuard} caps the nodes and time of each render.</li>
 *   <li>Jinja2 behaviour as Hugging Face configures it: {@code trim_blocks} and {@code lstrip_blocks} on; values print
 *       as Python's {@code str()} ({@link PythonOutput}).</li>
 * </ul>
 */
final class JinjaSandbox {
    /** The longest rendered conversation, in characters. */
    static final int MAX_OUTPUT_CHARS = 4 << 20;
    static final int MAX_COLLECTION_SIZE = 100_000;
    static final int MAX_RANGE = 10_000;

    private static final Set<String> DISABLED_TAGS = Set.of("include", "import", "from", "extends");
    private static final Set<String> DISABLED_FILTERS = Set.of(
            "render", "fromjson", "fromyaml", "toyaml", "pprint", "random", "shuffle", "ipaddr", "ipv4", "ipv6");

    private static final Jinjava ENGINE = build();

    private JinjaSandbox() {
    }

    private static Jinjava build() {
        CompositeELResolver resolver = new CompositeELResolver();
        resolver.add(new JinjavaListELResolver(true));
        resolver.add(new TypeConvertingMapELResolver(true));
        resolver.add(new SandboxResolver());
        JinjavaConfig config = JinjavaConfig.newBuilder()
                .withTrimBlocks(true)
                .withLstripBlocks(true)
                .withNestedInterpretationEnabled(false)
                .withElResolver(resolver)
                .withDisabled(Map.of(Context.Library.TAG, DISABLED_TAGS, Context.Library.FILTER, DISABLED_FILTERS))
                .withMaxOutputSize(MAX_OUTPUT_CHARS)
                .withMaxStringLength(MAX_OUTPUT_CHARS)
                .withMaxListSize(MAX_COLLECTION_SIZE)
                .withMaxMapSize(MAX_COLLECTION_SIZE)
                .withRangeLimit(MAX_RANGE)
                .withMaxRenderDepth(10)
                .withEnableRecursiveMacroCalls(true)
                .withMaxMacroRecursionDepth(20)
                .withFailOnUnknownTokens(false)
                .withLocale(Locale.ROOT)
                .withLegacyOverrides(LegacyOverrides.newBuilder()
                        .withUseTrimmingForNotesAndExpressions(true) // {{- x -}} and {#- -#} trim, as in Jinja2
                        .withParseWhitespaceControlStrictly(true)
                        .withUseNaturalOperatorPrecedence(true)      // a + b | trim filters b only, as in Jinja2
                        .withEvaluateMapKeys(true)
                        .withIterateOverMapKeys(true)                // for k in dict yields keys, as in Python
                        .withKeepNullableLoopValues(true)
                        .withUsePyishObjectMapper(true)
                        .build())
                .withExecutionMode(PythonOutput.INSTANCE)                  // values print as Python's str()
                .withProcessors(JinjavaProcessors.newBuilder().withNodePreProcessor(new RenderGuard()).build())
                .build();
        Jinjava jinjava = new PythonJinjava(config);
        jinjava.setResourceLocator(new RefuseAll());
        Context globals = jinjava.getGlobalContext();
        TemplateFilters.all().forEach(globals::registerFilter);
        TemplateFunctions.all().forEach(globals::registerFunction);
        globals.registerTag(new GenerationTag());
        return jinjava;
    }

    /**
     * Jinjava whose expressions parse with {@link PythonSyntax} (Jinja2's {@code ~}); otherwise the factory Jinjava makes
     * for itself (the same type converter, no parse cache setting). Jinjava fixes its factory's syntax in its
     * constructor; its interpreters take the factory from {@link #getExpressionFactory}.
     */
    private static final class PythonJinjava extends Jinjava {
        private final ExpressionFactory expressions;

        PythonJinjava(JinjavaConfig config) {
            super(config);
            Properties syntax = new Properties();
            syntax.setProperty(TreeBuilder.class.getName(), PythonSyntax.class.getName());
            expressions = new ExpressionFactoryImpl(syntax, new TruthyTypeConverter());
        }

        @Override
        public ExpressionFactory getExpressionFactory() {
            return expressions;
        }
    }

    /** Rejects a source that names filters or tests the engine does not have (see {@link TemplateNames}). */
    static void check(String source) throws TemplateException {
        Context globals = ENGINE.getGlobalContext();
        Set<String> filters = globals.getAllFilters().stream().map(f -> f.getName()).collect(Collectors.toSet());
        Set<String> tests = globals.getAllExpTests().stream().map(t -> t.getName()).collect(Collectors.toSet());
        TemplateNames.check(source, filters, tests);
    }

    /**
     * Renders {@code source} with {@code variables} (plain data only: maps, lists, strings, numbers, booleans).
     *
     * @throws TemplateException if the template does not parse, raises, uses something disabled, or exceeds a limit
     */
    static String render(String source, Map<String, ?> variables) throws TemplateException {
        if (source.contains(ExtendedParser.INTERPRETER))
            throw new TemplateException("chat template uses the reserved name " + ExtendedParser.INTERPRETER);
        RenderGuard.State state = RenderGuard.begin();
        RenderResult result;
        try {
            result = ENGINE.renderForResult(source, variables);
        } catch (RuntimeException e) {
            throw new TemplateException("chat template failed: " + describe(e), e);
        } finally {
            RenderGuard.end();
        }
        if (state.raised() != null) throw new TemplateException("chat template raised an exception: " + state.raised());
        if (state.stopped() != null) throw new TemplateException("chat template stopped: " + state.stopped());
        // Jinjava reports some real failures (macro recursion, unclosed tags) only as warnings: any error fails.
        if (!result.getErrors().isEmpty()) throw new TemplateException("chat template failed: " + describe(result.getErrors()));
        return result.getOutput();
    }

    private static String describe(List<TemplateError> errors) {
        Set<String> messages = new LinkedHashSet<>();
        for (TemplateError e : errors) {
            String line = e.getLineno() > 0 ? "line " + e.getLineno() + ": " : "";
            messages.add(line + e.getMessage());
        }
        return messages.stream().limit(5).collect(Collectors.joining("; "));
    }

    private static String describe(Throwable e) {
        String m = e.getMessage();
        return m == null ? e.getClass().getSimpleName() : m;
    }

    /** Template loading is not part of a chat template: every name is refused. */
    private static final class RefuseAll implements ResourceLocator {
        @Override
        public String getString(String fullName, java.nio.charset.Charset encoding,
                                com.hubspot.jinjava.interpret.JinjavaInterpreter interpreter) throws IOException {
            throw new IOException("chat templates may not load other templates (" + fullName + ")");
        }
    }
}
