// Writes the private key of PKCS12 keystores as PKCS#8 PEM files, for the client
// certificates of Sluice's development broker (keytool can make keys but not print them).
// Run by scripts/kafka.ts with the JDK's source launcher, one JVM for all the keys:
//   java ExportKey.java <store password> <keystore.p12> <alias> <out.pem> [<p12> <alias> <out>]...
import java.io.FileInputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.Key;
import java.security.KeyStore;
import java.util.Base64;

public class ExportKey {
  public static void main(String[] args) throws Exception {
    char[] password = args[0].toCharArray();
    for (int i = 1; i + 3 <= args.length; i += 3) {
      KeyStore store = KeyStore.getInstance("PKCS12");
      try (FileInputStream in = new FileInputStream(args[i])) {
        store.load(in, password);
      }
      Key key = store.getKey(args[i + 1], password);
      String body = Base64.getMimeEncoder(64, "\n".getBytes(StandardCharsets.US_ASCII))
          .encodeToString(key.getEncoded());
      String pem = "-----BEGIN PRIVATE KEY-----\n" + body + "\n-----END PRIVATE KEY-----\n";
      Files.writeString(Path.of(args[i + 2]), pem, StandardCharsets.US_ASCII);
    }
  }
}
