// The hello function as a Cloudflare Worker, served by workerd for the benchmarks.
export default {
  async fetch(request) {
    return new Response("Hello from Nimbus!\n", { headers: { "content-type": "text/plain" } });
  },
};
