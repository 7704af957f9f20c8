// Fingerprint runs Apache Avro's Java reference implementation for the
// schemas package's tests (java_test.go): the specification's Parsing
// Canonical Form and fingerprint, and the single-object encoding of
// org.apache.avro.message. It reads one command per line on stdin and writes
// one line of answer per command on stdout:
//
//   pcf <avsc>           SchemaNormalization.toParsingForm
//   fp <avsc>            parsingFingerprint64 as 8 little-endian bytes, hex
//   enc <avsc> <json>    BinaryMessageEncoder's bytes, hex, of the datum
//                        given in Avro's JSON encoding
//   dec <avsc> <hex>     BinaryMessageDecoder's datum, in Avro's JSON
//                        encoding, a tab, and the datum encoded again by
//                        BinaryMessageEncoder, hex
//
// Run with Debian's libavro-java (1.8.2) in source-file mode:
//   java -cp /usr/share/java/avro.jar:/usr/share/java/jackson-core-asl.jar:/usr/share/java/jackson-mapper-asl.jar Fingerprint.java
import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;

import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.Encoder;
import org.apache.avro.io.EncoderFactory;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.BinaryMessageEncoder;

public class Fingerprint {
    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.isEmpty()) {
                continue;
            }
            String[] f = line.split(" ", 3);
            Schema s = new Schema.Parser().parse(new File(f[1]));
            switch (f[0]) {
            case "pcf":
                System.out.println(SchemaNormalization.toParsingForm(s));
                break;
            case "fp":
                long fp = SchemaNormalization.parsingFingerprint64(s);
                System.out.println(hex(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(fp).array()));
                break;
            case "enc": {
                GenericRecord r = new GenericDatumReader<GenericRecord>(s)
                        .read(null, DecoderFactory.get().jsonDecoder(s, f[2]));
                ByteBuffer b = new BinaryMessageEncoder<GenericRecord>(GenericData.get(), s).encode(r);
                byte[] out = new byte[b.remaining()];
                b.get(out);
                System.out.println(hex(out));
                break;
            }
            case "dec": {
                GenericRecord r = new BinaryMessageDecoder<GenericRecord>(GenericData.get(), s).decode(unhex(f[2]));
                ByteArrayOutputStream out = new ByteArrayOutputStream();
                Encoder e = EncoderFactory.get().jsonEncoder(s, out);
                new GenericDatumWriter<GenericRecord>(s).write(r, e);
                e.flush();
                ByteBuffer b = new BinaryMessageEncoder<GenericRecord>(GenericData.get(), s).encode(r);
                byte[] again = new byte[b.remaining()];
                b.get(again);
                System.out.println(out.toString("UTF-8") + "\t" + hex(again));
                break;
            }
            default:
                throw new IllegalArgumentException("unknown command " + f[0]);
            }
        }
    }

    static String hex(byte[] b) {
        StringBuilder sb = new StringBuilder();
        for (byte x : b) {
            sb.append(String.format("%02x", x & 0xff));
        }
        return sb.toString();
    }

    static byte[] unhex(String s) {
        byte[] b = new byte[s.length() / 2];
        for (int i = 0; i < b.length; i++) {
            b[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        }
        return b;
    }
}
