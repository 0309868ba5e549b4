package weir.bench;

import java.io.Serializable;
import java.math.BigDecimal;
import java.math.MathContext;
import java.math.RoundingMode;
import java.time.LocalDate;
import java.util.List;

import org.apache.flink.table.data.ArrayData;
import org.apache.flink.table.data.DecimalData;
import org.apache.flink.table.data.MapData;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.data.TimestampData;
import org.apache.flink.table.types.logical.ArrayType;
import org.apache.flink.table.types.logical.LogicalType;
import org.apache.flink.table.types.logical.MapType;
import org.apache.flink.table.types.logical.RowType;
import org.apache.flink.types.RowKind;

/**
 * Table rows as JSON objects formatted as weir's {@code json} format writes them (Arrow's JSON
 * writer), so that the two sides' outputs compare line by line: columns in order, nulls
 * left out, doubles in their shortest round-trip digits ({@code 75.0}, {@code 1.0e10} beyond
 * 10^9 and below 10^-5, as the lexical crate writes them; NaN and infinities as null),
 * timestamps as {@code 2020-01-01T00:00:10} with a fraction only when it is not zero (3, 6 or
 * 9 digits; TIMESTAMP_LTZ in UTC with a {@code Z}), strings escaped as serde_json escapes them,
 * decimals as plain numbers.
 *
 * <p>A changelog row other than an insert is prefixed with its kind: {@code -U }, {@code +U }
 * or {@code -D }.
 */
public final class WeirJson implements Serializable {
    private static final long serialVersionUID = 1L;

    private final String[] names;
    private final LogicalType[] types;
    private transient RowData.FieldGetter[] getters;

    public WeirJson(List<String> names, List<LogicalType> types) {
        this.names = names.toArray(new String[0]);
        this.types = types.toArray(new LogicalType[0]);
    }

    /** The line of {@code row}: its change-kind prefix (none for an insert) and its object. */
    public String line(RowData row) {
        StringBuilder b = new StringBuilder(128);
        RowKind kind = row.getRowKind();
        if (kind != RowKind.INSERT) {
            b.append(kind.shortString()).append(' ');
        }
        if (getters == null) {
            getters = getters(types);
        }
        object(b, row, names, types, getters);
        return b.toString();
    }

    private static RowData.FieldGetter[] getters(LogicalType[] types) {
        RowData.FieldGetter[] getters = new RowData.FieldGetter[types.length];
        for (int i = 0; i < types.length; i++) {
            getters[i] = RowData.createFieldGetter(types[i], i);
        }
        return getters;
    }

    private static void object(
            StringBuilder b,
            RowData row,
            String[] names,
            LogicalType[] types,
            RowData.FieldGetter[] getters) {
        b.append('{');
        boolean first = true;
        for (int i = 0; i < names.length; i++) {
            Object v = getters[i].getFieldOrNull(row);
            if (v == null) {
                continue;
            }
            if (!first) {
                b.append(',');
            }
            first = false;
            string(b, names[i]);
            b.append(':');
            value(b, v, types[i]);
        }
        b.append('}');
    }

    static void value(StringBuilder b, Object v, LogicalType type) {
        switch (type.getTypeRoot()) {
            case BOOLEAN:
            case TINYINT:
            case SMALLINT:
            case INTEGER:
            case BIGINT:
            case INTERVAL_YEAR_MONTH:
            case INTERVAL_DAY_TIME:
                b.append(v);
                break;
            case FLOAT:
                number(b, (Float) v, true);
                break;
            case DOUBLE:
                number(b, (Double) v, false);
                break;
            case DECIMAL:
                b.append(((DecimalData) v).toBigDecimal().toPlainString());
                break;
            case CHAR:
            case VARCHAR:
                string(b, v.toString());
                break;
            case BINARY:
            case VARBINARY: {
                b.append('"');
                for (byte x : (byte[]) v) {
                    b.append(Character.forDigit((x >> 4) & 0xf, 16))
                            .append(Character.forDigit(x & 0xf, 16));
                }
                b.append('"');
                break;
            }
            case DATE:
                b.append('"').append(LocalDate.ofEpochDay((Integer) v)).append('"');
                break;
            case TIME_WITHOUT_TIME_ZONE: {
                long ms = (Integer) v;
                b.append('"');
                time(b, ms / 1000, (int) (ms % 1000) * 1_000_000);
                b.append('"');
                break;
            }
            case TIMESTAMP_WITHOUT_TIME_ZONE:
                b.append('"');
                timestamp(b, (TimestampData) v);
                b.append('"');
                break;
            case TIMESTAMP_WITH_LOCAL_TIME_ZONE:
            case TIMESTAMP_WITH_TIME_ZONE:
                b.append('"');
                timestamp(b, (TimestampData) v);
                b.append("Z\"");
                break;
            case ARRAY: {
                ArrayData array = (ArrayData) v;
                LogicalType element = ((ArrayType) type).getElementType();
                ArrayData.ElementGetter getter = ArrayData.createElementGetter(element);
                b.append('[');
                for (int i = 0; i < array.size(); i++) {
                    if (i > 0) {
                        b.append(',');
                    }
                    Object e = getter.getElementOrNull(array, i);
                    if (e == null) {
                        b.append("null");
                    } else {
                        value(b, e, element);
                    }
                }
                b.append(']');
                break;
            }
            case MAP:
            case MULTISET: {
                MapData map = (MapData) v;
                LogicalType keyType =
                        type instanceof MapType
                                ? ((MapType) type).getKeyType()
                                : ((org.apache.flink.table.types.logical.MultisetType) type)
                                        .getElementType();
                LogicalType valueType =
                        type instanceof MapType
                                ? ((MapType) type).getValueType()
                                : new org.apache.flink.table.types.logical.IntType();
                ArrayData.ElementGetter keys = ArrayData.createElementGetter(keyType);
                ArrayData.ElementGetter values = ArrayData.createElementGetter(valueType);
                b.append('{');
                for (int i = 0; i < map.size(); i++) {
                    if (i > 0) {
                        b.append(',');
                    }
                    Object k = keys.getElementOrNull(map.keyArray(), i);
                    StringBuilder key = new StringBuilder();
                    if (k != null) {
                        value(key, k, keyType);
                    }
                    String text = key.toString();
                    if (text.startsWith("\"")) {
                        b.append(text);
                    } else {
                        string(b, text);
                    }
                    b.append(':');
                    Object x = values.getElementOrNull(map.valueArray(), i);
                    if (x == null) {
                        b.append("null");
                    } else {
                        value(b, x, valueType);
                    }
                }
                b.append('}');
                break;
            }
            case ROW: {
                RowType rowType = (RowType) type;
                String[] names = rowType.getFieldNames().toArray(new String[0]);
                LogicalType[] types = rowType.getChildren().toArray(new LogicalType[0]);
                object(b, (RowData) v, names, types, getters(types));
                break;
            }
            default:
                string(b, v.toString());
        }
    }

    /** {@code s} as a JSON string, escaped as serde_json escapes it. */
    static void string(StringBuilder b, String s) {
        b.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"':
                    b.append("\\\"");
                    break;
                case '\\':
                    b.append("\\\\");
                    break;
                case '\n':
                    b.append("\\n");
                    break;
                case '\r':
                    b.append("\\r");
                    break;
                case '\t':
                    b.append("\\t");
                    break;
                case '\b':
                    b.append("\\b");
                    break;
                case '\f':
                    b.append("\\f");
                    break;
                default:
                    if (c < 0x20) {
                        b.append("\\u00")
                                .append(Character.forDigit(c >> 4, 16))
                                .append(Character.forDigit(c & 0xf, 16));
                    } else {
                        b.append(c);
                    }
            }
        }
        b.append('"');
    }

    /** As chrono's NaiveDateTime debug form: {@code 2020-01-01T00:00:10[.fff]}. */
    static void timestamp(StringBuilder b, TimestampData t) {
        long ms = t.getMillisecond();
        long seconds = Math.floorDiv(ms, 1000);
        int nanos = (int) Math.floorMod(ms, 1000) * 1_000_000 + t.getNanoOfMillisecond();
        long days = Math.floorDiv(seconds, 86_400);
        long secondOfDay = Math.floorMod(seconds, 86_400);
        b.append(LocalDate.ofEpochDay(days)).append('T');
        time(b, secondOfDay, nanos);
    }

    /** {@code HH:MM:SS}, then the fraction in 3, 6 or 9 digits, none if it is zero. */
    static void time(StringBuilder b, long secondOfDay, int nanos) {
        two(b, secondOfDay / 3600);
        b.append(':');
        two(b, secondOfDay / 60 % 60);
        b.append(':');
        two(b, secondOfDay % 60);
        if (nanos == 0) {
            return;
        }
        String digits;
        int width;
        if (nanos % 1_000_000 == 0) {
            digits = Integer.toString(nanos / 1_000_000);
            width = 3;
        } else if (nanos % 1000 == 0) {
            digits = Integer.toString(nanos / 1000);
            width = 6;
        } else {
            digits = Integer.toString(nanos);
            width = 9;
        }
        b.append('.');
        for (int i = digits.length(); i < width; i++) {
            b.append('0');
        }
        b.append(digits);
    }

    private static void two(StringBuilder b, long v) {
        if (v < 10) {
            b.append('0');
        }
        b.append(v);
    }

    /**
     * A float or double as the lexical crate writes it: the shortest digits that read back as
     * the same value; plain between 10^-5 and 10^9 inclusive (with ".0" when whole), else
     * {@code d.ddde-7}. NaN and infinities are null, as Arrow's JSON writer writes them.
     */
    static void number(StringBuilder b, double v, boolean single) {
        if (Double.isNaN(v) || Double.isInfinite(v)) {
            b.append("null");
            return;
        }
        if (v < 0 || (v == 0 && 1 / v < 0)) {
            b.append('-');
            v = -v;
        }
        if (v == 0) {
            b.append("0.0");
            return;
        }
        BigDecimal exact = new BigDecimal(v);
        BigDecimal shortest = exact;
        for (int p = 1; p <= 17; p++) {
            BigDecimal r = exact.round(new MathContext(p, RoundingMode.HALF_EVEN));
            boolean same = single ? r.floatValue() == (float) v : r.doubleValue() == v;
            if (same) {
                shortest = r;
                break;
            }
        }
        shortest = shortest.stripTrailingZeros();
        String digits = shortest.unscaledValue().toString();
        int exponent = digits.length() - 1 - shortest.scale();
        if (exponent < -5 || exponent > 9) {
            b.append(digits.charAt(0)).append('.');
            b.append(digits.length() > 1 ? digits.substring(1) : "0");
            b.append('e').append(exponent);
        } else if (exponent >= 0) {
            if (digits.length() <= exponent + 1) {
                b.append(digits);
                for (int i = digits.length(); i <= exponent; i++) {
                    b.append('0');
                }
                b.append(".0");
            } else {
                b.append(digits, 0, exponent + 1).append('.').append(digits.substring(exponent + 1));
            }
        } else {
            b.append("0.");
            for (int i = -1; i > exponent; i--) {
                b.append('0');
            }
            b.append(digits);
        }
    }
}
