// {{name}}: a Lambda-style Node.js function.
//
// `event` is API Gateway's HTTP event (version 2.0): rawPath, headers,
// queryStringParameters, body, requestContext. Return an object with
// statusCode, headers and body, or any JSON value. console.log() goes to
// `nimbus logs {{name}}`.
export const handler = async (event, context) => {
  const name = event.queryStringParameters?.name ?? 'world';
  console.log(`{{name}}: hello to ${name}`);
  return {
    statusCode: 200,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ message: `Hello, ${name}!`, function: context.functionName }),
  };
};
