# One image for every node: SERVICES= picks the services a container runs (moleculer-runner convention, through
# dist/scripts/node.js: the runner without its environment overrides, see scripts/node.ts).
#   docker build -t crp .
#   docker run -e SERVICES=api -e TRANSPORTER=nats://nats:4222 ... crp

# --- build: compile TypeScript (fails on any type error) and keep production dependencies only
FROM node:22-bookworm-slim AS build
WORKDIR /app
# sqlite3 builds from source when no prebuilt binary can be fetched.
RUN apt-get update \
	&& apt-get install -y --no-install-recommends python3 make g++ \
	&& rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json moleculer.config.ts ./
COPY lib ./lib
COPY mixins ./mixins
COPY sagas ./sagas
COPY services ./services
COPY scripts ./scripts
RUN npm run build && npm prune --omit=dev

# --- runtime
FROM node:22-bookworm-slim
ENV NODE_ENV=production \
	SERVICEDIR=dist/services \
	PORT=3000 \
	METRICS_PORT=3030
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The operator console's static files (/admin): tsc compiles only TypeScript, so they are copied beside the compiled gateway.
COPY --from=build /app/services/api/console ./dist/services/api/console
# The booking page's static files (/ and /app/*), for the same reason.
COPY --from=build /app/services/api/app ./dist/services/api/app
USER node
EXPOSE 3000 3030
# SIGTERM reaches the runner directly (no shell), which stops the broker gracefully.
CMD ["node", "dist/scripts/node.js", "--config", "dist/moleculer.config.js"]
