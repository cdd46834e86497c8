package dev.jsloth.data;

import com.hubspot.jinjava.el.ext.JinjavaBeanELResolver;
import com.hubspot.jinjava.lib.exptest.ExpTest;
import com.hubspot.jinjava.lib.filter.Filter;
import com.hubspot.jinjava.objects.SafeString;
import com.hubspot.jinjava.util.ForLoop;
import jinjava.javax.el.ELContext;
import jinjava.javax.el.ELResolver;
import jinjava.javax.el.MethodNotFoundException;

import java.beans.FeatureDescriptor;
import java.util.AbstractMap;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

/**
 * The only attribute reads and method calls a sandboxed chat template can make, beyond indexing lists and maps
 * (which Jinjava's list and map resolvers handle).
 *
 * <p>It replaces Jinjava's bean resolver, so no Java getter or method of any object is reachable by reflection.
 * Allowed are: the {@code loop} variable's attributes ({@code loop.index0}, {@code loop.last}, ...) and
 * {@code loop.cycle(...)}; Python {@code str} methods (see {@link PyStrings}); {@code dict.get/items/keys/values};
 * and {@code list.append/extend/pop/index/count} (lists are size-limited by the sandbox, and every render gets fresh
 * copies of its data). Jinjava itself applies filters and tests by calling {@code filter}/{@code evaluate} on their
 * objects, which templates cannot name; those calls are passed through. Anything else is "no such method", which
 * fails the render.
 */
final class SandboxResolver extends ELResolver {
    private static final Object NOT_RESOLVED = PyStrings.NO_METHOD;
    /** Reflection, used only for the engine's own filter and test calls. */
    private static final ELResolver ENGINE_CALLS = new JinjavaBeanELResolver(true);

    @Override
    public Object getValue(ELContext context, Object base, Object property) {
        Integer index = index(property);
        if (base instanceof CharSequence s && index != null) {
            int i = index < 0 ? index + s.length() : index;
            if (i < 0 || i >= s.length()) throw new IllegalArgumentException("string index out of range");
            context.setPropertyResolved(true);
            return String.valueOf(s.charAt(i));
        }
        if (base instanceof ForLoop loop && property != null) {
            Object value = switch (property.toString()) {
                case "index" -> (long) loop.getIndex();
                case "index0" -> (long) loop.getIndex0();
                case "revindex" -> (long) loop.getRevindex();
                case "revindex0" -> (long) loop.getRevindex0();
                case "first" -> loop.isFirst();
                case "last" -> loop.isLast();
                case "length" -> (long) loop.getLength();
                case "depth" -> (long) loop.getDepth();
                case "depth0" -> (long) loop.getDepth0();
                default -> NOT_RESOLVED;
            };
            if (value != NOT_RESOLVED) {
                context.setPropertyResolved(true);
                return value;
            }
        }
        return null;
    }

    /** A Python index: an integer, or its decimal text (Jinjava passes properties as text). */
    private static Integer index(Object property) {
        if (property instanceof Number n) return n.intValue();
        if (property instanceof String s && s.matches("-?\\d{1,9}")) return Integer.parseInt(s);
        return null;
    }

    @Override
    public Object invoke(ELContext context, Object base, Object method, Class<?>[] paramTypes, Object[] params) {
        if (method == null) return null;
        String name = method.toString();
        if (base == null) {
            // Jinjava calls filter(...)/evaluate(...) on the filter or test it looked up; null means no such one.
            if (name.equals("filter")) throw new MethodNotFoundException("no such filter");
            if (name.equals("evaluate") || name.equals("evaluateNegated")) throw new MethodNotFoundException("no such test");
            return null;
        }
        Object[] args = params == null ? new Object[0] : params;
        Object result = switch (base) {
            case String s -> PyStrings.call(s, name, args);
            case SafeString s -> PyStrings.call(s.toString(), name, args);
            case Map<?, ?> m -> callDict(m, name, args);
            case List<?> l -> callList(l, name, args);
            case ForLoop loop when name.equals("cycle") -> loop.cycle(args);
            // Jinjava applies filters and tests by calling these methods; nothing else of theirs is reachable.
            case Filter f when name.equals("filter") -> ENGINE_CALLS.invoke(context, base, method, paramTypes, params);
            case ExpTest t when name.equals("evaluate") || name.equals("evaluateNegated") ->
                    ENGINE_CALLS.invoke(context, base, method, paramTypes, params);
            default -> NOT_RESOLVED;
        };
        if (result == NOT_RESOLVED)
            throw new MethodNotFoundException("'" + TemplateValues.typeName(base) + "' object has no method '" + name + "'");
        context.setPropertyResolved(true);
        return result;
    }

    private static Object callDict(Map<?, ?> m, String name, Object[] args) {
        return switch (name) {
            case "get" -> {
                if (args.length == 0) throw new IllegalArgumentException("get() takes a key");
                yield m.containsKey(args[0]) ? m.get(args[0]) : args.length > 1 ? args[1] : null;
            }
            case "items" -> {
                List<Map.Entry<Object, Object>> items = new ArrayList<>(m.size());
                for (Map.Entry<?, ?> e : m.entrySet()) items.add(new AbstractMap.SimpleImmutableEntry<>(e.getKey(), e.getValue()));
                yield items;
            }
            case "keys" -> new ArrayList<>(m.keySet());
            case "values" -> new ArrayList<>(m.values());
            default -> NOT_RESOLVED;
        };
    }

    @SuppressWarnings("unchecked")
    private static Object callList(List<?> list, String name, Object[] args) {
        List<Object> l = (List<Object>) list;
        return switch (name) {
            case "append" -> {
                if (args.length != 1) throw new IllegalArgumentException("append() takes exactly one argument");
                l.add(args[0]);
                yield null;
            }
            case "extend" -> {
                if (args.length != 1 || !(args[0] instanceof Collection<?> c))
                    throw new IllegalArgumentException("extend() takes one list");
                l.addAll(c);
                yield null;
            }
            case "pop" -> {
                if (l.isEmpty()) throw new IllegalArgumentException("pop from empty list");
                int i = args.length == 0 ? l.size() - 1 : PyStrings.toInt(args[0]);
                if (i < 0) i += l.size();
                if (i < 0 || i >= l.size()) throw new IllegalArgumentException("pop index out of range");
                yield l.remove(i);
            }
            case "index" -> {
                int i = l.indexOf(args.length == 0 ? null : args[0]);
                if (i < 0) throw new IllegalArgumentException("value is not in list");
                yield (long) i;
            }
            case "count" -> l.stream().filter(o -> java.util.Objects.equals(o, args.length == 0 ? null : args[0])).count();
            default -> NOT_RESOLVED;
        };
    }

    @Override
    public Class<?> getType(ELContext context, Object base, Object property) {
        return null;
    }

    @Override
    public void setValue(ELContext context, Object base, Object property, Object value) {
        // read-only: nothing is resolved here
    }

    @Override
    public boolean isReadOnly(ELContext context, Object base, Object property) {
        return true;
    }

    @Override
    public Iterator<FeatureDescriptor> getFeatureDescriptors(ELContext context, Object base) {
        return null;
    }

    @Override
    public Class<?> getCommonPropertyType(ELContext context, Object base) {
        return null;
    }
}
