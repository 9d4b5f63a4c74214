// Prints the private key of one alias of a PKCS12 keystore as PKCS#8 PEM, for the client
// certificates of Sluice's development broker (keytool can make keys but not print them).
// Run by scripts/kafka.ts with the JDK's source launcher:
//   java ExportKey.java <keystore.p12> <store password> <alias>
import java.io.FileInputStream;
import java.security.Key;
import java.security.KeyStore;
import java.util.Base64;

public class ExportKey {
  public static void main(String[] args) throws Exception {
    KeyStore store = KeyStore.getInstance("PKCS12");
    try (FileInputStream in = new FileInputStream(args[0])) {
      store.load(in, args[1].toCharArray());
    }
    Key key = store.getKey(args[2], args[1].toCharArray());
    String body = Base64.getMimeEncoder(64, "\n".getBytes()).encodeToString(key.getEncoded());
    System.out.print("-----BEGIN PRIVATE KEY-----\n" + body + "\n-----END PRIVATE KEY-----\n");
  }
}
